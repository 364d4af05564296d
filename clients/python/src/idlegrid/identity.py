"""A party's Ed25519 key, the ID derived from it, and request signatures.

The ID is the first 16 bytes of the SHA-256 of the raw public key, in hex. Every request
carries three headers: the ID, the time in milliseconds, and an Ed25519 signature over::

    idlegrid-v1\\n{METHOD}\\n{path and query}\\n{time_ms}\\n{hex SHA-256 of the body}

Key files hold the 32-byte private seed in hex, as the ``idlegrid`` command line writes them,
so a key can be shared between the two.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from .errors import IdlegridError

HEADER_ID = "x-idlegrid-id"
HEADER_TIME = "x-idlegrid-time"
HEADER_SIGNATURE = "x-idlegrid-signature"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``: element names and the body hash of signatures."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SignedHeaders:
    """The three headers of a signed request."""

    party: str
    time_ms: int
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {HEADER_ID: self.party, HEADER_TIME: str(self.time_ms), HEADER_SIGNATURE: self.signature}


class Identity:
    """An Ed25519 key pair and the party ID derived from it."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self.public_key: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.id: str = hashlib.sha256(self.public_key).digest()[:16].hex()

    def __repr__(self) -> str:
        return f"Identity(id={self.id})"

    @classmethod
    def generate(cls) -> Identity:
        return cls(secrets.token_bytes(32))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Identity:
        """The key in ``path``, or a new one written there (readable by its owner only)."""
        path = Path(path)
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            identity = cls.generate()
            write_private(path, identity._seed.hex().encode())
            return identity
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise IdlegridError(f"cannot read the key file {path}: not a 64-character hex key") from None

    def sign(self, method: str, path_and_query: str, time_ms: int, body_sha256_hex: str) -> SignedHeaders:
        """Sign a request; ``path_and_query`` must be exactly what goes on the request line."""
        text = f"idlegrid-v1\n{method.upper()}\n{path_and_query}\n{time_ms}\n{body_sha256_hex}"
        signature = self._key.sign(text.encode())
        return SignedHeaders(self.id, time_ms, signature.hex())

    def certificate_request(self) -> str:
        """A certificate signing request (PEM) for this key, signed with it: the server issues
        the client certificate of mutual TLS from it at registration."""
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idlegrid party")])
        request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(self._key, None)
        return request.public_bytes(serialization.Encoding.PEM).decode()

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for the TLS client certificate."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
