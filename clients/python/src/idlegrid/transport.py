"""Signed HTTP requests to one server, and the data channel for elements.

Every request but registration carries the party's signature (see :mod:`idlegrid.identity`);
over HTTPS it also presents the client certificate the server issued at registration.
Elements are content-addressed by SHA-256: ``HEAD`` first, so nothing is uploaded twice, then
``PUT``; downloads are checked against their hash.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from . import tls
from .errors import ApiError, IdlegridError, NetworkError, ProtocolError, UntrustedServerError
from .identity import Identity, sha256_hex, write_private
from .types import ElementKind, ElementRef
from .wasm import strip_custom_sections

log = logging.getLogger("idlegrid")

#: Idle connections are dropped before the server's own idle timeout (10 s) closes them:
#: reusing one it is closing fails the request.
_KEEPALIVE_SECONDS = 5.0
#: A client certificate is renewed once less than this part of its validity is left.
_RENEW_WHEN_LEFT = datetime.timedelta(days=30)
_STREAM_CHUNK_BYTES = 256 * 1024
_EMPTY_SHA256 = sha256_hex(b"")


def _name_in_query(name: str) -> str:
    return "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.") else f"%{b:02X}" for b in name.encode()
    )


class Transport:
    """An HTTP client that signs every request with the party's key.

    ``server`` is the base URL (``https://host:7700``, or ``http://`` for a development
    server). For HTTPS the server's CA is ``ca_pem`` when given, else the one pinned in
    ``pin``; if that file does not exist yet, the CA the server presents is trusted on first
    use and written there.
    """

    def __init__(
        self,
        server: str,
        identity: Identity,
        *,
        ca_pem: str | None = None,
        pin: Path | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IdlegridError(
                f"server address '{server}' must start with https:// (or http:// for a development server)"
            )
        self.identity = identity
        self.tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self.tls else 80)
        self._pin = pin
        self._ca_pem = ca_pem
        if self.tls and ca_pem is None:
            if pin is None:
                raise IdlegridError(
                    f"to connect to {self.server} the server's certificate authority is needed: "
                    "give its file, or a file to pin it in on first use"
                )
            if pin.exists():
                self._ca_pem = pin.read_text()
        self._registration: tuple[str, str] | None = None
        self._certificate_expires: datetime.datetime | None = None
        self._http = self._client(None)

    def _client(self, certificate_pem: str | None) -> httpx.Client:
        limits = httpx.Limits(keepalive_expiry=_KEEPALIVE_SECONDS)
        timeout = httpx.Timeout(60.0, connect=10.0)
        if not self.tls:
            return httpx.Client(limits=limits, timeout=timeout)
        if self._ca_pem is None:
            # Until the CA is known nothing is trusted: requests fail, naming the problem.
            return httpx.Client(limits=limits, timeout=timeout, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        key = self.identity.private_key_pem() if certificate_pem else None
        return httpx.Client(limits=limits, timeout=timeout, verify=tls.context(self._ca_pem, certificate_pem, key))

    def close(self) -> None:
        self._http.close()

    @property
    def server_ca(self) -> str | None:
        """The server's CA (PEM) once known."""
        return self._ca_pem

    def _trust_server(self) -> None:
        if self._ca_pem is not None or not self.tls:
            return
        assert self._pin is not None
        pem = tls.fetch_server_ca(self._host, self._port)
        write_private(self._pin, pem.encode())
        log.warning(
            "trusting the certificate authority of %s on first use (fingerprint %s, pinned in %s); "
            "compare the fingerprint with the one the server logs",
            self.server,
            tls.fingerprint(pem),
            self._pin,
        )
        self._ca_pem = pem

    def register(self, role: str = "client", name: str = "python") -> dict[str, Any]:
        """Register this identity (harmless when done before). Over HTTPS this also obtains the
        client certificate that every later request presents."""
        self._trust_server()
        body: dict[str, Any] = {"role": role, "public_key": self.identity.public_key.hex(), "name": name}
        if self.tls:
            body["csr"] = self.identity.certificate_request()
            anonymous = self._client(None)
            try:
                answer = self._send(anonymous, "POST", "/v1/register", json.dumps(body).encode(), {})
            finally:
                anonymous.close()
        else:
            answer = self._send(self._http, "POST", "/v1/register", json.dumps(body).encode(), {})
        registered: dict[str, Any] = _decode(answer)
        if self.tls:
            certificate = registered.get("certificate")
            if not certificate:
                raise ProtocolError("the server issued no certificate at registration")
            expires = x509.load_pem_x509_certificate(certificate.encode()).not_valid_after_utc
            old, self._http = self._http, self._client(certificate)
            old.close()
            self._certificate_expires = expires
        self._registration = (role, name)
        return registered

    def _renew_if_due(self) -> None:
        expires = self._certificate_expires
        now = datetime.datetime.now(datetime.timezone.utc)
        if expires is not None and self._registration is not None and expires - now < _RENEW_WHEN_LEFT:
            try:
                self.register(*self._registration)
            except IdlegridError as error:
                log.warning("cannot renew the client certificate yet; the current one stays in use: %s", error)

    def _send(
        self,
        http: httpx.Client,
        method: str,
        path_and_query: str,
        content: bytes | Iterator[bytes] | None,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            return http.request(
                method,
                self.server + path_and_query,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as error:
            raise _network(error) from None

    def signed(
        self,
        method: str,
        path_and_query: str,
        *,
        content: bytes | Iterator[bytes] | None = None,
        body_sha256_hex: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """A signed request; the body's hash is computed unless given (a streamed upload)."""
        self._renew_if_due()
        if body_sha256_hex is None:
            body_sha256_hex = sha256_hex(content) if isinstance(content, bytes) else _EMPTY_SHA256
        signature = self.identity.sign(method, path_and_query, int(time.time() * 1000), body_sha256_hex)
        all_headers = signature.as_dict() | (headers or {})
        return self._send(self._http, method, path_and_query, content, all_headers, timeout)

    def call(self, method: str, path_and_query: str, body: Any = None, timeout: float | None = None) -> Any:
        """A signed JSON request; returns the decoded answer (``None`` for an empty one)."""
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"content-type": "application/json"} if body is not None else {}
        return _decode(self.signed(method, path_and_query, content=content, headers=headers, timeout=timeout))

    # ---- the data channel ----

    def element_size(self, hash: str) -> int | None:
        """Size of an element if this party already has it on the server."""
        response = self.signed("HEAD", f"/v1/elements/{hash}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _failure(response)
        size = response.headers.get("x-idlegrid-element-size")
        if size is None or not size.isdigit():
            raise ProtocolError("the server did not say the element's size")
        return int(size)

    def upload(self, data: bytes, kind: ElementKind = "data", name: str = "") -> ElementRef:
        """Upload bytes as an element, unless the server has them for this party already. An
        executable is first stripped of its custom sections; the returned hash is that of
        what was uploaded."""
        if kind == "executable":
            data = strip_custom_sections(data, name)
        hash = sha256_hex(data)
        size = self.element_size(hash)
        if size is not None:
            return ElementRef(hash, size)
        path = f"/v1/elements/{hash}?kind={kind}&name={_name_in_query(name)}"
        return ElementRef.from_json(_decode(self.signed("PUT", path, content=data, body_sha256_hex=hash)))

    def upload_file(self, file: str | os.PathLike[str], kind: ElementKind = "data", name: str | None = None) -> ElementRef:
        """Upload a file as an element: hashed first, then streamed (an executable is read
        whole, to be stripped)."""
        file = Path(file)
        name = file.name if name is None else name
        if kind == "executable":
            return self.upload(file.read_bytes(), kind, name)
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_STREAM_CHUNK_BYTES), b""):
                digest.update(chunk)
        hash, size = digest.hexdigest(), file.stat().st_size
        known = self.element_size(hash)
        if known is not None:
            return ElementRef(hash, known)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as handle:
                yield from iter(lambda: handle.read(_STREAM_CHUNK_BYTES), b"")

        path = f"/v1/elements/{hash}?kind={kind}&name={_name_in_query(name)}"
        response = self.signed(
            "PUT", path, content=chunks(), body_sha256_hex=hash, headers={"content-length": str(size)}
        )
        return ElementRef.from_json(_decode(response))

    def download(self, element: ElementRef, limit_bytes: int | None = None) -> bytes:
        """The bytes of an element, checked against its hash and size."""
        if limit_bytes is not None and element.size > limit_bytes:
            raise IdlegridError(f"element {element.hash} of {element.size} bytes exceeds the limit of {limit_bytes}")
        response = self.signed("GET", f"/v1/elements/{element.hash}", timeout=600.0)
        if response.status_code != 200:
            raise _failure(response)
        data = response.content
        if len(data) != element.size or sha256_hex(data) != element.hash:
            raise ProtocolError(f"element {element.hash} arrived corrupted (hash or size mismatch)")
        return data


def _network(error: httpx.HTTPError) -> IdlegridError:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return UntrustedServerError(
                f"the server's certificate is not from the certificate authority this client trusts ({cause.verify_message}); "
                "if the server's CA changed on purpose, give the new one or delete the pinned copy"
            )
        cause = cause.__cause__ or cause.__context__
    return NetworkError(f"cannot reach the server: {error}")


def _failure(response: httpx.Response) -> ApiError:
    try:
        report = response.json()["error"]
        return ApiError(response.status_code, str(report["code"]), str(report["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "internal", f"HTTP {response.status_code}: {response.text[:300]}")


def _decode(response: httpx.Response) -> Any:
    if not response.is_success:
        raise _failure(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as error:
        raise ProtocolError(f"cannot decode the answer: {error}") from None
