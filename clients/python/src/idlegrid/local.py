"""A server and engines on this machine, as processes of the ``idlegrid`` binary: for tests,
benchmarks and trying things out without a platform.

>>> from idlegrid.local import LocalCluster
>>> with LocalCluster("target/release/idlegrid", "/tmp/grid", engines=2) as cluster:
...     client = cluster.client()
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx

from .client import Client
from .errors import IdlegridError


def free_port() -> int:
    """A TCP port of the loopback address that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_binary(hint: str | os.PathLike[str] | None = None) -> Path:
    """The ``idlegrid`` binary: ``hint``, ``$IDLEGRID_BIN``, or ``idlegrid`` on the PATH."""
    for candidate in (hint, os.environ.get("IDLEGRID_BIN"), shutil.which("idlegrid")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise IdlegridError("no idlegrid binary: build it with `cargo build --release -p idlegrid-cli` and give its path")


class LocalCluster:
    """One server (HTTPS, or plain HTTP with ``plain_http``) and ``engines`` engines of
    ``cores`` slots each, with their data under ``folder``. Stops them all on :meth:`stop`."""

    def __init__(
        self,
        binary: str | os.PathLike[str] | None,
        folder: str | os.PathLike[str],
        *,
        engines: int = 1,
        cores: int = 1,
        prefetch: int = 4,
        plain_http: bool = False,
        startup_seconds: float = 60.0,
    ) -> None:
        self.binary = find_binary(binary)
        self.folder = Path(folder)
        self.url = f"{'http' if plain_http else 'https'}://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start_server(startup_seconds)
            for index in range(engines):
                self.start_engine(f"engine-{index}", cores, prefetch)
        except BaseException:
            self.stop()
            raise

    @property
    def ca_file(self) -> Path | None:
        """The server's CA (HTTPS only)."""
        return self.folder / "server" / "tls" / "ca.pem" if self.url.startswith("https://") else None

    def _start_server(self, startup_seconds: float) -> None:
        command = [str(self.binary), "server", "--listen", self.url.rsplit("/", 1)[1]]
        command += ["--data", str(self.folder / "server"), "--log", "warn"]
        # Engines that fall silent lose their tasks within seconds; no CPU benchmarks, which
        # would take a slot of every new engine.
        command += ["--engine-silence-secs", "3", "--maintenance-secs", "0.2", "--benchmark-interval-secs", "0"]
        # Every party of a local cluster connects from this machine's one address: the limits
        # per source address, which guard a public server, would only slow it down.
        command += ["--connections-per-source", "100000", "--unauthenticated-per-second", "1000000"]
        command += ["--unauthenticated-burst", "1000000", "--registrations-per-minute", "1000000"]
        command += ["--registration-burst", "1000000"]
        if self.ca_file is None:
            command.append("--insecure-plain-http")
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.processes.append(server)
        deadline = time.monotonic() + startup_seconds
        while not self._healthy():
            if server.poll() is not None:
                raise IdlegridError(f"the server exited with code {server.returncode}")
            if time.monotonic() > deadline:
                raise IdlegridError(f"the server at {self.url} did not answer within {startup_seconds} s")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        verify: ssl.SSLContext | bool = False
        if self.ca_file is not None:
            if not self.ca_file.is_file():
                return False
            verify = ssl.create_default_context(cadata=self.ca_file.read_text())
        try:
            return httpx.get(f"{self.url}/v1/health", verify=verify, timeout=2.0).status_code == 200
        except (httpx.HTTPError, ssl.SSLError):
            return False

    def start_engine(self, name: str, cores: int = 1, prefetch: int = 4) -> subprocess.Popen[bytes]:
        """Start one more engine, with its data in ``folder/name``."""
        command = [str(self.binary), "--server", self.url]
        if self.ca_file is not None:
            command += ["--server-ca", str(self.ca_file)]
        command += ["engine", "--data", str(self.folder / name), "--name", name]
        command += ["--cores", str(cores), "--prefetch", str(prefetch), "--status-listen", "off", "--log", "warn"]
        # A local cluster is the developer's own machine given over to the job: tasks run at
        # normal priority, so that other busy programs do not starve them until the server
        # takes them back from engines it thinks silent.
        command += ["--task-priority", "normal"]
        engine = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.processes.append(engine)
        return engine

    def client(self, home: str | os.PathLike[str] | None = None, **options: object) -> Client:
        """A client of this server, trusting its CA, with its key in ``home`` (default:
        ``folder/home``)."""
        home = home if home is not None else self.folder / "home"
        return Client.connect(self.url, server_ca=self.ca_file, home=home, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop every process (engines first)."""
        for process in reversed(self.processes):
            process.kill()
            process.wait()
        self.processes.clear()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
