"""The job API: define, launch, watch, control and collect.

A :class:`Client` is one session with the server. It is synchronous and meant for one thread:
a call that needs the server's answer polls the session until the answer is there, and
events of watched jobs that arrive meanwhile wait in the watch's queue.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from urllib.parse import urlsplit
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

from .channel import Channel, Received, retry
from .errors import IdlegridError, ProtocolError, RefusedError
from .identity import Identity
from .transport import Transport
from .types import (
    ElementKind,
    ElementRef,
    JobEvent,
    JobInfo,
    JobProperties,
    JobState,
    Payload,
    Replay,
    TaskSpec,
    TaskStatus,
)

log = logging.getLogger("idlegrid")

#: Tasks per message and messages per request when adding tasks: at most 4,000 tasks are held
#: in memory whatever the size of the job.
_TASKS_PER_MESSAGE = 1000
_MESSAGES_PER_REQUEST = 4


def default_home() -> Path:
    """Where the ``idlegrid`` command line keeps the client's key and pinned CAs:
    ``$IDLEGRID_HOME``, or ``~/.idlegrid``."""
    return Path(os.environ.get("IDLEGRID_HOME") or Path.home() / ".idlegrid")


def _file_stem(server: str) -> str:
    parts = urlsplit(server)
    host = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "_" for c in parts.hostname or "server")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}_{port}"


class Client:
    """A connection to the server as a client. Use :meth:`connect` to make one, and close it
    (or use it in a ``with`` block) when done, so that the server knows what was processed."""

    def __init__(self, channel: Channel, poll_wait: float = 25.0) -> None:
        self._channel = channel
        self.poll_wait = poll_wait
        self._replies: dict[int, list[dict[str, Any]]] = {}
        self._awaiting: set[int] = set()
        self._queues: dict[str, deque[Received]] = {}

    @classmethod
    def connect(
        cls,
        server: str | None = None,
        *,
        server_ca: str | os.PathLike[str] | None = None,
        identity: Identity | None = None,
        home: str | os.PathLike[str] | None = None,
        name: str = "python",
        poll_wait: float = 25.0,
        connect_give_up_after: float | None = 30.0,
    ) -> Client:
        """Register as a client (harmless when done before) and open a session.

        Defaults follow the ``idlegrid`` command line, so that both act as the same client:
        the server is ``$IDLEGRID_SERVER`` (or ``https://127.0.0.1:7700``), its CA the file
        ``server_ca`` (or ``$IDLEGRID_SERVER_CA``), else trusted on first use and pinned in
        ``home/servers/``; the key is ``home/client.key`` (created when missing) unless
        ``identity`` is given. ``home`` defaults to :func:`default_home`.
        """
        server = server or os.environ.get("IDLEGRID_SERVER") or "https://127.0.0.1:7700"
        home_dir = Path(home) if home is not None else default_home()
        ca_file = server_ca if server_ca is not None else os.environ.get("IDLEGRID_SERVER_CA")
        ca_pem = Path(ca_file).read_text() if ca_file else None
        pin = home_dir / "servers" / f"{_file_stem(server)}.ca.pem"
        identity = identity or Identity.load_or_create(home_dir / "client.key")
        transport = Transport(server, identity, ca_pem=ca_pem, pin=pin)
        try:
            retry(lambda: transport.register("client", name), connect_give_up_after)
            channel = Channel.open(transport, connect_give_up_after=connect_give_up_after)
        except BaseException:
            transport.close()
            raise
        return cls(channel, poll_wait)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def identity(self) -> Identity:
        return self._channel.transport.identity

    @property
    def session(self) -> str:
        return self._channel.session

    @property
    def transport(self) -> Transport:
        return self._channel.transport

    def close(self) -> None:
        """Acknowledge what was processed and close the session."""
        try:
            self._channel.close()
        finally:
            self._channel.transport.close()

    # ---- the session ----

    def _pump(self, wait: float) -> None:
        """One poll: answers go to their requests, events to the queues of watched jobs."""
        messages = retry(lambda: self._channel.poll(wait), self._channel.send_give_up_after)
        for received in messages:
            message = received.message
            if received.reply_to is not None:
                if received.reply_to in self._awaiting:
                    self._replies.setdefault(received.reply_to, []).append(message)
                self._channel.release(received.seq)
                continue
            queue = self._queues.get(message.get("job", ""))
            if queue is not None and message.get("type") in ("TaskStatus", "JobProperties"):
                queue.append(received)
                continue
            if message.get("type") == "Error":
                log.warning("the server reported an error: %s (%s)", message.get("message"), message.get("code"))
            self._channel.release(received.seq)

    def request(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send messages and return what the server answered to them. An ``Error`` answer
        to any of them raises :class:`RefusedError`."""
        # Answers arrive only through polls, which come after the send: single-threaded, none
        # can be missed.
        first, head = self._channel.send(messages)
        seqs = range(first, first + len(messages))
        self._awaiting.update(seqs)
        try:
            while self._channel.received < head:
                self._pump(self.poll_wait)
            answers = [answer for seq in seqs for answer in self._replies.pop(seq, [])]
        finally:
            self._awaiting.difference_update(seqs)
            for seq in seqs:
                self._replies.pop(seq, None)
        for answer in answers:
            if answer.get("type") == "Error":
                raise RefusedError(str(answer.get("code")), str(answer.get("message")))
        return answers

    def _answer(self, message: dict[str, Any], kind: str, what: str) -> dict[str, Any]:
        for answer in self.request([message]):
            if answer.get("type") == kind:
                return answer
        raise ProtocolError(f"the server did not answer with {what}")

    def _job_reply(self, message: dict[str, Any]) -> JobInfo:
        return JobInfo.from_json(self._answer(message, "JobProperties", "the job's properties"))

    # ---- elements ----

    def upload(self, data: bytes, kind: ElementKind = "data", name: str = "") -> ElementRef:
        """Upload bytes as an element (once: the server keeps one copy per content). An
        executable is stripped of its custom sections first: use the returned reference in
        task specs."""
        return self.transport.upload(data, kind, name)

    def upload_file(self, path: str | os.PathLike[str], kind: ElementKind = "data") -> ElementRef:
        """Upload a file as an element, streamed (an executable is read whole)."""
        return self.transport.upload_file(path, kind)

    def fetch(self, payload: Payload) -> bytes:
        """The bytes of a result or status: inline, or downloaded and checked."""
        if payload.inline is not None:
            return payload.inline
        if payload.element is None:
            return b""
        return self.transport.download(payload.element)

    # ---- jobs ----

    def create_job(self, properties: JobProperties | None = None) -> JobInfo:
        """Create a job (in state ``defining``: add tasks, then launch it)."""
        job = str(uuid.uuid4())
        body = (properties or JobProperties()).to_json()
        return self._job_reply({"type": "CreateJob", "job": job, "properties": body})

    def add_tasks(self, job: str, tasks: Iterable[TaskSpec]) -> int:
        """Add tasks, sending them in batches as the iterable yields them, so that memory stays
        bounded whatever the number of tasks. Returns how many were added."""
        iterator = iter(tasks)
        added = 0
        while True:
            messages = []
            for _ in range(_MESSAGES_PER_REQUEST):
                batch = [task.to_json() for task in itertools.islice(iterator, _TASKS_PER_MESSAGE)]
                if not batch:
                    break
                messages.append({"type": "Task", "job": job, "tasks": batch})
                added += len(batch)
            if not messages:
                return added
            self.request(messages)

    def launch(self, job: str) -> JobInfo:
        """Launch every task of the job not launched yet."""
        return self._job_reply({"type": "Launch", "job": job})

    def submit(self, tasks: Iterable[TaskSpec], properties: JobProperties | None = None) -> JobInfo:
        """Create a job with these tasks and launch it."""
        info = self.create_job(properties)
        self.add_tasks(info.job, tasks)
        return self.launch(info.job)

    def stop(self, job: str, task: int | None = None) -> JobInfo:
        """Stop a job, or one of its tasks: running tasks are handed back with their last
        checkpoint, from which :meth:`resume` restarts them."""
        return self._job_reply({"type": "Stop", "job": job, "task": task})

    def resume(self, job: str, task: int | None = None) -> JobInfo:
        """Resume a stopped job or task."""
        return self._job_reply({"type": "Resume", "job": job, "task": task})

    def remove_job(self, job: str) -> None:
        """Remove a job and everything the server holds for it."""
        self.request([{"type": "RemoveJob", "job": job}])

    def job(self, job: str) -> JobInfo:
        """A job's state and counts."""
        return self._job_reply({"type": "GetJobProperties", "job": job})

    def jobs(self) -> list[JobInfo]:
        """This client's jobs."""
        answer = self._answer({"type": "GetContents"}, "Contents", "the list of jobs")
        return [JobInfo.from_json(job) for job in answer.get("jobs", [])]

    def task_status(self, job: str, task: int) -> TaskStatus:
        """One task's status (with its result, once it has one)."""
        answer = self._answer({"type": "GetTaskStatus", "job": job, "task": task}, "TaskStatus", "the task's status")
        return TaskStatus.from_json(answer)

    def checkpoint(self, job: str, task: int, timeout: float = 120.0) -> bytes | None:
        """A checkpoint of a task: the engine running it is asked for a fresh one (for a
        stopped task, the one it handed back); ``None`` if the task has saved none."""
        first, _ = self._channel.send([{"type": "GetTask", "job": job, "task": task}])
        self._awaiting.add(first)
        deadline = time.monotonic() + timeout
        try:
            while True:
                for answer in self._replies.pop(first, []):
                    if answer.get("type") == "Error":
                        raise RefusedError(str(answer.get("code")), str(answer.get("message")))
                    if answer.get("type") == "Task":
                        element = answer.get("checkpoint")
                        return self.transport.download(ElementRef.from_json(element)) if element else None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no checkpoint of task {task} of job {job} within {timeout} s")
                self._pump(min(self.poll_wait, left))
        finally:
            self._awaiting.discard(first)
            self._replies.pop(first, None)

    def watch(self, job: str, replay: Replay = "undelivered", timeout: float | None = None) -> JobWatch:
        """Subscribe to a job's statuses and results. Results that waited on the server while no
        client was attached come first (``replay="undelivered"``); ``"all"`` replays every
        final result, ``"none"`` only new ones. ``timeout`` bounds the wait for each event."""
        # Results already processed are acknowledged before the server decides which are
        # undelivered.
        self._channel.flush_acks()
        self._queues[job] = deque()
        try:
            self.request([{"type": "Attach", "job": job, "replay": replay}])
        except BaseException:
            self._queues.pop(job, None)
            raise
        return JobWatch(self, job, timeout)


class JobWatch(Iterator[JobEvent]):
    """The events of a job: :class:`TaskStatus` (interim and final) and :class:`JobInfo` (when
    the job completes). An event counts as processed when the next one is asked for, so an
    event not processed before a crash is sent again to the next watcher."""

    def __init__(self, client: Client, job: str, timeout: float | None) -> None:
        self._client = client
        self.job = job
        self.timeout = timeout
        self._current: int | None = None
        self._closed = False

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __next__(self) -> JobEvent:
        if self._closed:
            raise StopIteration
        client = self._client
        if self._current is not None:
            client._channel.release(self._current)
            self._current = None
        queue = client._queues[self.job]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not queue:
            left = client.poll_wait if deadline is None else min(client.poll_wait, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"no event of job {self.job} within {self.timeout} s")
            client._pump(left)
        received = queue.popleft()
        self._current = received.seq
        message = received.message
        if message["type"] == "TaskStatus":
            return TaskStatus.from_json(message)
        return JobInfo.from_json(message)

    def results(self) -> Iterator[TaskStatus]:
        """The final status of each task (succeeded or failed) as it arrives, until the job
        completes."""
        for event in self:
            if isinstance(event, TaskStatus) and event.final:
                yield event
            elif isinstance(event, JobInfo) and event.state == JobState.COMPLETED:
                return

    def close(self) -> None:
        """Stop watching: events still queued are released, and the server stops sending them
        to this session."""
        if self._closed:
            return
        self._closed = True
        client = self._client
        queue = client._queues.pop(self.job, deque())
        if self._current is not None:
            client._channel.release(self._current)
        for received in queue:
            client._channel.release(received.seq)
        try:
            client._channel.send([{"type": "Detach", "job": self.job}])
        except IdlegridError as error:
            log.debug("cannot detach from job %s: %s", self.job, error)
