"""Errors raised by the client. Every one is an :class:`IdlegridError`."""

from __future__ import annotations


class IdlegridError(Exception):
    """Base class of every error of this package."""

    @property
    def transient(self) -> bool:
        """Worth retrying after a pause: the server is down, overloaded or briefly failing."""
        return False


class NetworkError(IdlegridError):
    """The server could not be reached, or the connection broke."""

    @property
    def transient(self) -> bool:
        return True


class UntrustedServerError(IdlegridError):
    """The server's certificate is not from the certificate authority this client trusts.

    Never retried: talking to an impostor, or to a server whose CA changed, must not go on by
    itself. If the CA changed on purpose, give the new one or delete the pinned copy.
    """


class ApiError(IdlegridError):
    """The server answered an HTTP request with an error status.

    ``code`` is the machine-readable class (``bad_request``, ``unauthenticated``, ``forbidden``,
    ``unknown_job``, ...), ``message`` says what is wrong for people.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the server refused the request ({status}): {message} ({code})")
        self.status = status
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status in (408, 429)


class RefusedError(IdlegridError):
    """The server processed a message and answered it with an error (an unknown job, say)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the server refused: {message} ({code})")
        self.code = code
        self.message = message


class ProtocolError(IdlegridError):
    """The server answered something this client does not understand, or the session lost
    track of its sequence numbers."""


class InvalidExecutableError(IdlegridError):
    """Bytes given as an executable element are not a WebAssembly module this client ships."""
