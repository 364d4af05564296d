"""TLS towards the server: contexts that trust only the server's certificate authority and
present the client certificate issued at registration (mutual TLS), and trust on first use of
the CA, as SSH does for host keys.

On first use the CA is the last certificate of the chain the server presents; it is accepted
only if the server's certificate then verifies under it for the name dialled. The caller pins
it in a file, and trusts only the pinned CA from then on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
from pathlib import Path

from .errors import NetworkError, UntrustedServerError


def context(ca_pem: str, certificate_pem: str | None = None, key_pem: bytes | None = None) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` and, when given, presents the certificate
    and its private key."""
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    if certificate_pem is not None and key_pem is not None:
        # The ssl module loads keys only from files: a private folder, removed at once.
        with tempfile.TemporaryDirectory(prefix="idlegrid-") as folder:
            certificate_file = Path(folder, "certificate.pem")
            key_file = Path(folder, "key.pem")
            certificate_file.write_text(certificate_pem)
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(key_pem)
            tls.load_cert_chain(certificate_file, key_file)
    return tls


def _unverified_chain(connection: ssl.SSLSocket) -> list[bytes]:
    """The chain the server presented, DER-encoded, leaf first."""
    read = getattr(connection, "get_unverified_chain", None)  # Python 3.13 and later
    if read is None:
        # Python 3.10 to 3.12 have the same call, not yet public.
        read = getattr(getattr(connection, "_sslobj", None), "get_unverified_chain", None)
    if read is None:
        raise UntrustedServerError("this Python cannot read the server's certificate chain: give the server's CA file")
    chain = read() or []
    return [
        certificate if isinstance(certificate, bytes) else certificate.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
        for certificate in chain
    ]


def fetch_server_ca(host: str, port: int, timeout: float = 10.0) -> str:
    """The PEM of the CA that the server at ``host:port`` presents, after checking that the
    server's certificate is valid under it for ``host``."""
    name = host.strip("[]")
    recorder = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    recorder.check_hostname = False
    recorder.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((name, port), timeout=timeout) as raw:
            with recorder.wrap_socket(raw, server_hostname=name) as connection:
                chain = _unverified_chain(connection)
    except (OSError, ssl.SSLError) as error:
        raise NetworkError(f"cannot reach {name}:{port} over TLS: {error}") from None
    if len(chain) < 2:
        raise UntrustedServerError(
            f"the server at {name}:{port} does not present its CA with its certificate: give the CA file"
        )
    ca_pem = ssl.DER_cert_to_PEM_cert(chain[-1])
    checker = context(ca_pem)
    try:
        with socket.create_connection((name, port), timeout=timeout) as raw:
            with checker.wrap_socket(raw, server_hostname=name):
                pass
    except ssl.SSLCertVerificationError as error:
        raise UntrustedServerError(
            f"the certificate of {name}:{port} is not valid under the CA it presents: {error.verify_message}"
        ) from None
    except (OSError, ssl.SSLError) as error:
        raise NetworkError(f"cannot reach {name}:{port} over TLS: {error}") from None
    return ca_pem


def fingerprint(pem: str) -> str:
    """SHA-256 of a certificate, hex pairs with colons, as the server logs it for people to
    compare."""
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
