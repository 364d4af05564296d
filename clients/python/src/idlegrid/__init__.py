"""Idlegrid's Python client: submit jobs of WebAssembly tasks to a server, whose compute
engines run them on idle computers, and collect the results as they arrive.

>>> import idlegrid
>>> with idlegrid.Client.connect("https://127.0.0.1:7700") as client:
...     noop = client.upload_file("noop.wasm", "executable")
...     job = client.submit([idlegrid.TaskSpec(i, noop, params=str(i)) for i in range(100)])
...     with client.watch(job.job) as watch:
...         for status in watch.results():
...             print(status.task, client.fetch(status.result))

See the README of this package for the whole API.
"""

from .channel import Channel
from .client import Client, JobWatch, default_home
from .errors import (
    ApiError,
    IdlegridError,
    InvalidExecutableError,
    NetworkError,
    ProtocolError,
    RefusedError,
    UntrustedServerError,
)
from .identity import Identity
from .market import Market
from .transport import Transport
from .types import (
    ElementRef,
    JobCounts,
    JobEvent,
    JobInfo,
    JobProperties,
    JobState,
    Payload,
    TaskFailure,
    TaskLimits,
    TaskSpec,
    TaskState,
    TaskStatus,
)

__all__ = [
    "ApiError",
    "Channel",
    "Client",
    "ElementRef",
    "IdlegridError",
    "Identity",
    "InvalidExecutableError",
    "JobCounts",
    "JobEvent",
    "JobInfo",
    "JobProperties",
    "JobState",
    "JobWatch",
    "Market",
    "NetworkError",
    "Payload",
    "ProtocolError",
    "RefusedError",
    "TaskFailure",
    "TaskLimits",
    "TaskSpec",
    "TaskState",
    "TaskStatus",
    "Transport",
    "UntrustedServerError",
    "default_home",
]
