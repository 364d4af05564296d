"""One session's reliable message channel.

Sending: messages get consecutive sequence numbers; a batch is sent again with the same
numbers until the server answers, and the server skips numbers it has processed, so nothing
is processed twice. Receiving: a poll asks for the messages after the last one received and
acknowledges those up to the last one the application *released* (processed), so that a
crash before processing makes the server send them again. Messages received twice are
dropped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from .errors import IdlegridError, ProtocolError
from .transport import Transport
from .types import SessionInfo

log = logging.getLogger("idlegrid")

#: Messages in one POST (the server takes up to 1,000).
BATCH_MESSAGES_MAX = 100
#: Longest long poll the server holds, in seconds.
POLL_WAIT_SECONDS_MAX = 30.0

T = TypeVar("T")


def retry(attempt: Callable[[], T], give_up_after: float | None, initial: float = 0.1, most: float = 10.0) -> T:
    """Run ``attempt``, retrying transient failures (server down, overloaded) with exponential
    back-off and jitter; ``give_up_after`` seconds (``None``: never) bounds the retries."""
    started = time.monotonic()
    failures = 0
    while True:
        try:
            return attempt()
        except IdlegridError as error:
            if not error.transient or (give_up_after is not None and time.monotonic() - started > give_up_after):
                raise
            delay = min(initial * 2 ** min(failures, 20), most) * (1 - 0.25 * random.random())
            failures += 1
            if failures == 1 or failures % 10 == 0:
                log.warning("server unavailable (%s); retrying in %.1f s", error, delay)
            time.sleep(delay)


@dataclass(frozen=True)
class Received:
    """A server message and its place in the channel."""

    seq: int
    #: For an answer: the sequence number of the message it answers.
    reply_to: int | None
    message: dict[str, Any]


class Channel:
    """The message channel of one session. Not thread-safe: use it from one thread."""

    def __init__(self, transport: Transport, info: SessionInfo, send_give_up_after: float | None = None) -> None:
        self.transport = transport
        self.session = info.session
        self.send_give_up_after = send_give_up_after
        self._next_seq = info.inbound_acked + 1
        self._received = info.outbound_acked
        self._unreleased: set[int] = set()
        self._acked_sent = info.outbound_acked

    @classmethod
    def open(
        cls,
        transport: Transport,
        resume: str | None = None,
        *,
        connect_give_up_after: float | None = 30.0,
        send_give_up_after: float | None = None,
    ) -> Channel:
        """Open a session, or resume ``resume`` if the server still has it."""
        body = {"resume": resume} if resume else {}
        answer = retry(lambda: transport.call("POST", "/v1/sessions", body), connect_give_up_after)
        return cls(transport, SessionInfo.from_json(answer), send_give_up_after)

    @property
    def received(self) -> int:
        """The highest sequence number received."""
        return self._received

    @property
    def ack_position(self) -> int:
        """Every message up to this number was released."""
        return min(self._unreleased) - 1 if self._unreleased else self._received

    def send(self, messages: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Send messages in order. Returns the sequence number of the first, and the server's
        outbox head after the last: every answer to these messages is numbered at most that."""
        first = self._next_seq
        head = self._received
        for start in range(0, len(messages), BATCH_MESSAGES_MAX):
            batch = messages[start : start + BATCH_MESSAGES_MAX]
            envelopes = [{"seq": self._next_seq + i, "message": message} for i, message in enumerate(batch)]
            last = self._next_seq + len(batch) - 1
            path = f"/v1/sessions/{self.session}/messages"
            body = {"messages": envelopes}
            reply = retry(lambda: self.transport.call("POST", path, body, timeout=120.0), self.send_give_up_after)
            if reply["inbound_acked"] < last:
                self._next_seq = int(reply["inbound_acked"]) + 1
                raise ProtocolError(
                    f"the server processed messages up to {reply['inbound_acked']} of {last}: "
                    "the session is out of sync, reset it or open a new one"
                )
            self._next_seq = last + 1
            head = int(reply["outbound_head"])
        return first, head

    def poll(self, wait: float) -> list[Received]:
        """Acknowledge released messages and fetch new ones, waiting up to ``wait`` seconds
        when there are none. Each returned message must be :meth:`release`\\ d once processed."""
        after, ack = self._received, self.ack_position
        wait_ms = int(min(max(wait, 0.0), POLL_WAIT_SECONDS_MAX) * 1000)
        path = f"/v1/sessions/{self.session}/messages?after={after}&ack={ack}&wait_ms={wait_ms}"
        reply = self.transport.call("GET", path, timeout=wait_ms / 1000 + 30.0)
        self._acked_sent = max(self._acked_sent, ack)
        fresh = []
        for envelope in reply["messages"]:
            seq = int(envelope["seq"])
            if seq <= self._received:
                continue  # received before: a repeat
            self._received = seq
            self._unreleased.add(seq)
            fresh.append(Received(seq, envelope.get("reply_to"), envelope["message"]))
        return fresh

    def release(self, seq: int) -> None:
        """The application is done with message ``seq``."""
        self._unreleased.discard(seq)

    def flush_acks(self) -> None:
        """Tell the server the acknowledgement position now, without waiting for messages."""
        ack = self.ack_position
        if ack <= self._acked_sent:
            return
        path = f"/v1/sessions/{self.session}/messages?after={self._received}&ack={ack}&wait_ms=0&max=1"
        self.transport.call("GET", path)  # messages in the answer come again with the next poll
        self._acked_sent = ack

    def reset(self) -> SessionInfo:
        """Re-synchronise after losing track of positions: adopt the server's view of both,
        forget what was received but not released (the server sends it again), and number
        new messages after the last one the server processed."""
        path = f"/v1/sessions/{self.session}/reset"
        info = SessionInfo.from_json(retry(lambda: self.transport.call("POST", path), self.send_give_up_after))
        self._next_seq = info.inbound_acked + 1
        self._received = self._acked_sent = info.outbound_acked
        self._unreleased.clear()
        return info

    def close(self) -> None:
        """Acknowledge what was released and close the session on the server."""
        try:
            self.flush_acks()
        except IdlegridError as error:
            log.debug("cannot flush acknowledgements before closing: %s", error)
        self.transport.call("DELETE", f"/v1/sessions/{self.session}", timeout=10.0)
