"""A real Idlegrid server and engine for the tests, as separate processes of the ``idlegrid``
binary built from this repository.

The binary is ``$IDLEGRID_BIN``, else ``target/debug/idlegrid`` or ``target/release/idlegrid``
(``cargo build -p idlegrid-cli``); the example tasks are in ``$IDLEGRID_TASKS_DIR``, else
``examples/tasks/target/wasm32-wasip1/release`` (``cargo xtask build-tasks``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import idlegrid
from idlegrid.local import LocalCluster

REPOSITORY = Path(__file__).resolve().parents[3]
#: Generous bound so that a broken test fails instead of hanging; never a speed assertion.
PATIENCE = 180.0


def idlegrid_binary() -> Path:
    given = os.environ.get("IDLEGRID_BIN")
    candidates = [Path(given)] if given else [REPOSITORY / "target" / p / "idlegrid" for p in ("debug", "release")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.fail(f"no idlegrid binary at {', '.join(map(str, candidates))}: build it with `cargo build -p idlegrid-cli`")


def wait_for(what: str, check: Callable[[], bool], patience: float = PATIENCE) -> None:
    """Wait until ``check()`` holds, polling."""
    deadline = time.monotonic() + patience
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_cluster(folder: Path, engines: int = 1, cores: int = 2, plain_http: bool = False) -> LocalCluster:
    return LocalCluster(idlegrid_binary(), folder, engines=engines, cores=cores, plain_http=plain_http)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A server over HTTPS with one engine of two slots, shared by the tests."""
    with start_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def client(server: LocalCluster, tmp_path: Path) -> Iterator[idlegrid.Client]:
    """A new client (its own key and home) of the shared server, trusting its CA file."""
    with server.client(tmp_path / "home", poll_wait=5.0) as client:
        yield client


@pytest.fixture(scope="session")
def tasks() -> Path:
    folder = Path(os.environ.get("IDLEGRID_TASKS_DIR") or REPOSITORY / "examples/tasks/target/wasm32-wasip1/release")
    if not (folder / "noop.wasm").is_file():
        pytest.fail(f"no example tasks in {folder}: build them with `cargo xtask build-tasks`")
    return folder
