"""The wire types of the HTTP API as dataclasses, with their JSON form.

Field names are those of the JSON the server speaks (see ``/v1/openapi.json`` and the message
catalogue): snake case, bytes in base64, hashes and IDs as text.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Mapping, Union

from .errors import ProtocolError

#: Which results :meth:`idlegrid.Client.watch` replays before streaming new ones: the final
#: results no session of this client has acknowledged yet, every final result, or none.
Replay = Literal["undelivered", "all", "none"]

#: What an element is: task code, or task input (and large outputs).
ElementKind = Literal["executable", "data"]


class TaskState(str, Enum):
    """Where a task is in its life on the server."""

    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    STOPPED = "stopped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED)


class JobState(str, Enum):
    """Where a job is in its life: defining (tasks may be added), running, stopped, completed."""

    DEFINING = "defining"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as error:
        raise ProtocolError(f"invalid base64 from the server: {error}") from None


@dataclass(frozen=True)
class ElementRef:
    """An element stored on the server: the SHA-256 of its bytes (hex) and its size."""

    hash: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ElementRef:
        return cls(hash=str(value["hash"]), size=int(value["size"]))


@dataclass(frozen=True)
class Payload:
    """Result or status bytes: small ones inline, large ones as an element to fetch
    (:meth:`idlegrid.Client.fetch` handles both)."""

    inline: bytes | None = None
    element: ElementRef | None = None

    @property
    def size(self) -> int:
        return len(self.inline) if self.inline is not None else self.element.size if self.element else 0

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Payload:
        if "inline" in value:
            return cls(inline=_b64decode(value["inline"]))
        if "element" in value:
            return cls(element=ElementRef.from_json(value["element"]))
        raise ProtocolError(f"a payload is inline or an element, not {sorted(value)}")


@dataclass
class TaskLimits:
    """Limits every task of a job runs under (engines may cap them further)."""

    memory_bytes_max: int = 256 << 20
    cpu_seconds_max: int = 3600
    result_bytes_max: int = 16 << 20
    checkpoint_bytes_max: int = 16 << 20

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class JobProperties:
    """What a job asks for. Fields left ``None`` take the server's defaults; ``extra`` carries
    further properties verbatim in their JSON form (``validation``, ``validator``,
    ``cluster``, ``power_max_gflops``, ...)."""

    name: str = ""
    priority: int = 0
    task_limits: TaskLimits = field(default_factory=TaskLimits)
    attempts_max: int = 5
    deadline_unix_ms: int | None = None
    cost_max_micros: int | None = None
    scheduling_hints: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "priority": self.priority,
            "task_limits": self.task_limits.to_json(),
            "attempts_max": self.attempts_max,
            "scheduling_hints": dict(self.scheduling_hints),
        }
        if self.deadline_unix_ms is not None:
            value["deadline_unix_ms"] = self.deadline_unix_ms
        if self.cost_max_micros is not None:
            value["cost_max_micros"] = self.cost_max_micros
        value.update(self.extra)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobProperties:
        known = {"name", "priority", "task_limits", "attempts_max", "deadline_unix_ms", "cost_max_micros"}
        limits = value.get("task_limits") or {}
        return cls(
            name=value.get("name", ""),
            priority=value.get("priority", 0),
            task_limits=TaskLimits(**{k: int(v) for k, v in limits.items() if k in vars(TaskLimits())}),
            attempts_max=value.get("attempts_max", 5),
            deadline_unix_ms=value.get("deadline_unix_ms"),
            cost_max_micros=value.get("cost_max_micros"),
            scheduling_hints=dict(value.get("scheduling_hints") or {}),
            extra={k: v for k, v in value.items() if k not in known | {"scheduling_hints"}},
        )


def _hash_of(element: str | ElementRef) -> str:
    return element.hash if isinstance(element, ElementRef) else element


@dataclass
class TaskSpec:
    """One task: its executable element, named data elements, and parameters.

    ``index`` numbers the task within its job (0, 1, 2, ...); results name it. Parameters are
    bytes the task reads with ``params()``; text is sent as UTF-8. Elements are given as the
    :class:`ElementRef` an upload returned, or as a hash.
    """

    index: int
    executable: str | ElementRef
    params: bytes | str = b""
    data: dict[str, str | ElementRef] = field(default_factory=dict)
    priority: int | None = None

    def to_json(self) -> dict[str, Any]:
        params = self.params.encode() if isinstance(self.params, str) else bytes(self.params)
        value: dict[str, Any] = {
            "index": self.index,
            "executable": _hash_of(self.executable),
            "data": {name: _hash_of(element) for name, element in self.data.items()},
            "params": _b64encode(params),
        }
        if self.priority is not None:
            value["priority"] = self.priority
        return value


@dataclass(frozen=True)
class JobCounts:
    """How many tasks of a job are in each state."""

    created: int = 0
    queued: int = 0
    running: int = 0
    stopped: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.created + self.queued + self.running + self.stopped + self.succeeded + self.failed

    @property
    def concluded(self) -> int:
        return self.succeeded + self.failed

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobCounts:
        return cls(**{name: int(value.get(name, 0)) for name in vars(cls()).keys()})


@dataclass(frozen=True)
class JobInfo:
    """A job as the server reports it."""

    job: str
    properties: JobProperties
    state: JobState
    counts: JobCounts
    created_unix_ms: int

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobInfo:
        return cls(
            job=value["job"],
            properties=JobProperties.from_json(value.get("properties") or {}),
            state=JobState(value["state"]),
            counts=JobCounts.from_json(value["counts"]),
            created_unix_ms=int(value.get("created_unix_ms", 0)),
        )


@dataclass(frozen=True)
class TaskFailure:
    """Why a task failed: ``kind`` for programs (``trap``, ``out_of_memory``,
    ``cpu_time_exceeded``, ``reported``, ...), ``message`` for people."""

    kind: str
    message: str


@dataclass(frozen=True)
class TaskStatus:
    """An interim or final status of one task of a job."""

    job: str
    task: int
    state: TaskState
    #: 0.0 to 1.0, as last reported by the task.
    progress: float
    #: The last interim status the task sent.
    status: Payload | None
    #: The final result of a succeeded task.
    result: Payload | None
    failure: TaskFailure | None
    cpu_ms: int
    #: How many times the task was placed on an engine.
    attempts: int
    #: The job's counts when this status was sent.
    counts: JobCounts

    @property
    def final(self) -> bool:
        return self.state.final

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TaskStatus:
        failure = value.get("failure")
        return cls(
            job=value["job"],
            task=int(value["task"]),
            state=TaskState(value["state"]),
            progress=float(value.get("progress", 0.0)),
            status=Payload.from_json(value["status"]) if value.get("status") else None,
            result=Payload.from_json(value["result"]) if value.get("result") else None,
            failure=TaskFailure(failure["kind"], failure["message"]) if failure else None,
            cpu_ms=int(value.get("cpu_ms", 0)),
            attempts=int(value.get("attempts", 0)),
            counts=JobCounts.from_json(value.get("counts") or {}),
        )


#: What a job watch yields: a task's status, or the job's properties (when watching starts
#: and when the job completes).
JobEvent = Union[TaskStatus, JobInfo]


@dataclass(frozen=True)
class SessionInfo:
    """Both positions of a session's channel, as the server knows them."""

    session: str
    #: The last message from this client that the server processed.
    inbound_acked: int
    #: The last server message this client acknowledged.
    outbound_acked: int
    #: The last message in the server's outbox for this session.
    outbound_head: int

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SessionInfo:
        return cls(
            session=value["session"],
            inbound_acked=int(value["inbound_acked"]),
            outbound_acked=int(value["outbound_acked"]),
            outbound_head=int(value["outbound_head"]),
        )
