"""The client against a real server and engine: registration over mutual TLS, trust of the
server's CA, elements, jobs, watching and streaming results, stop and resume, refusals."""

from __future__ import annotations

import datetime
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import idlegrid
from idlegrid import ApiError, Client, JobProperties, JobState, RefusedError, TaskLimits, TaskSpec, TaskState
from idlegrid.identity import sha256_hex
from idlegrid.wasm import strip_custom_sections

from conftest import PATIENCE, idlegrid_binary, start_cluster, wait_for
from idlegrid.local import LocalCluster


def _run(client: Client, tasks: list[TaskSpec], properties: JobProperties | None = None) -> dict[int, idlegrid.TaskStatus]:
    """Submit a job and collect every final status, each exactly once."""
    job = client.create_job(properties)
    with client.watch(job.job, timeout=PATIENCE) as watch:
        assert client.add_tasks(job.job, iter(tasks)) == len(tasks)
        launched = client.launch(job.job)
        assert launched.state == JobState.RUNNING
        finals: dict[int, idlegrid.TaskStatus] = {}
        for status in watch.results():
            assert status.task not in finals, f"task {status.task} reported twice"
            finals[status.task] = status
    assert client.job(job.job).state == JobState.COMPLETED
    return finals


def test_a_job_of_many_tasks_streams_every_result_once(client: Client, tasks: Path) -> None:
    noop = client.upload_file(tasks / "noop.wasm", "executable")
    wordcount = client.upload_file(tasks / "wordcount.wasm", "executable")
    text = "one two three\nfour five\n" * 1000
    chunk = client.upload(text.encode(), "data", "chunk 1.txt")
    assert chunk == idlegrid.ElementRef(sha256_hex(text.encode()), len(text))
    assert client.upload(text.encode(), "data", "again") == chunk, "uploaded once, found the second time"
    specs = [TaskSpec(i, noop, params=f"task {i}") for i in range(60)]
    specs.append(TaskSpec(60, wordcount, data={"text": chunk}))
    finals = _run(client, specs, JobProperties(name="python"))
    assert sorted(finals) == list(range(61))
    for index in range(60):
        assert finals[index].state is TaskState.SUCCEEDED, finals[index]
        assert client.fetch(finals[index].result) == f"task {index}".encode()
    assert client.fetch(finals[60].result) == f"2000 5000 {len(text)}".encode()
    assert any(job.job == finals[0].job for job in client.jobs())


def test_executables_are_shipped_without_custom_sections(client: Client, tasks: Path) -> None:
    module = (tasks / "noop.wasm").read_bytes()
    # A module with a name section naming the client's project.
    named = module + bytes([0, 20]) + b"\x04name" + b"secret-project!"
    element = client.upload(named, "executable", "named.wasm")
    assert element.hash == sha256_hex(strip_custom_sections(named))
    assert element.hash == client.upload(module, "executable", "plain.wasm").hash
    finals = _run(client, [TaskSpec(0, element, params="still runs")])
    assert client.fetch(finals[0].result) == b"still runs"


def test_large_results_travel_as_elements_and_are_checked(client: Client, tasks: Path) -> None:
    misbehave = client.upload_file(tasks / "misbehave.wasm", "executable")
    finals = _run(client, [TaskSpec(0, misbehave, params="mode=big-result bytes=3000000")])
    result = finals[0].result
    assert result is not None and result.element is not None and result.element.size == 3_000_000
    assert client.fetch(result) == b"\x07" * 3_000_000


def test_failures_arrive_with_their_kind_and_reason(client: Client, tasks: Path) -> None:
    misbehave = client.upload_file(tasks / "misbehave.wasm", "executable")
    limits = TaskLimits(memory_bytes_max=64 << 20, cpu_seconds_max=2)
    specs = [
        TaskSpec(0, misbehave, params="mode=missing-element"),
        TaskSpec(1, misbehave, params="mode=trap"),
        TaskSpec(2, misbehave, params="mode=oom"),
    ]
    finals = _run(client, specs, JobProperties(task_limits=limits))
    assert [finals[i].state for i in range(3)] == [TaskState.FAILED] * 3
    kinds = {i: finals[i].failure.kind for i in range(3)}  # type: ignore[union-attr]
    assert kinds == {0: "reported", 1: "trap", 2: "out_of_memory"}
    assert "'does-not-exist' not found" in finals[0].failure.message  # type: ignore[union-attr]


def test_stop_hands_tasks_back_with_checkpoints_and_resume_finishes_them(client: Client, tasks: Path) -> None:
    misbehave = client.upload_file(tasks / "misbehave.wasm", "executable")
    job = client.create_job()
    client.add_tasks(job.job, [TaskSpec(i, misbehave, params="mode=stop-aware target=1500") for i in range(2)])
    client.launch(job.job)
    wait_for("a task to run", lambda: client.job(job.job).counts.running > 0)
    time.sleep(0.3)  # let it get part way: the checkpoint must be from the middle
    stopped = client.stop(job.job)
    assert stopped.state == JobState.STOPPED
    checkpoints: list[bytes] = []

    def handed_back() -> bool:
        found = [client.checkpoint(job.job, task) for task in range(2)]
        checkpoints[:] = [c for c in found if c is not None]
        return bool(checkpoints)

    wait_for("a stopped task's checkpoint on the server", handed_back)
    (count,) = struct.unpack("<Q", checkpoints[0])
    assert 0 < count < 1500, f"stopped part way: {count}"
    counts = client.job(job.job).counts
    assert counts.stopped + counts.succeeded == 2
    assert client.resume(job.job).state == JobState.RUNNING
    with client.watch(job.job, replay="all", timeout=PATIENCE) as watch:
        results = {status.task: client.fetch(status.result) for status in watch.results()}  # type: ignore[arg-type]
    assert results == {0: b"1500", 1: b"1500"}
    client.remove_job(job.job)
    with pytest.raises(RefusedError) as error:
        client.job(job.job)
    assert error.value.code == "unknown_job"


def test_results_wait_for_a_client_that_was_away(server: LocalCluster, tasks: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    connect = lambda name: Client.connect(server.url, server_ca=server.ca_file, home=home, name=name, poll_wait=5.0)  # noqa: E731
    with connect("first") as first:
        noop = first.upload_file(tasks / "noop.wasm", "executable")
        job = first.submit([TaskSpec(i, noop, params=str(i)) for i in range(20)]).job
    # Fire and forget; later another process of the same client (the same key in `home`) comes.
    with connect("probe") as probe:
        wait_for("the job to complete", lambda: probe.job(job).counts.succeeded == 20)
    with connect("second") as second:
        with second.watch(job, timeout=PATIENCE) as watch:
            got = sorted(status.task for status in watch.results())
        assert got == list(range(20))
        # Acknowledged: a later watch for undelivered results finds none.
        with second.watch(job, timeout=PATIENCE) as watch:
            assert list(watch.results()) == []


def test_refusals_name_what_is_wrong(client: Client, tasks: Path) -> None:
    with pytest.raises(RefusedError, match="task_limits.memory_bytes_max") as invalid:
        client.create_job(JobProperties(task_limits=TaskLimits(memory_bytes_max=1)))
    assert invalid.value.code == "bad_request"
    noop = client.upload_file(tasks / "noop.wasm", "executable")
    job = client.create_job()
    ghost = sha256_hex(b"never uploaded")
    with pytest.raises(RefusedError, match=f"data element 'input'.*{ghost}"):
        client.add_tasks(job.job, [TaskSpec(0, noop, data={"input": ghost})])
    assert client.job(job.job).counts.total == 0, "nothing was added"
    with pytest.raises(RefusedError) as unknown:
        client.job("123e4567-e89b-12d3-a456-426614174000")
    assert unknown.value.code == "unknown_job"


def test_requests_with_a_wrong_signature_are_refused(client: Client) -> None:
    transport = client.transport
    forged = transport.identity.sign("GET", "/v1/jobs", int(time.time() * 1000), sha256_hex(b""))
    tampered = forged.as_dict() | {"x-idlegrid-signature": "00" * 64}
    response = transport._http.get(f"{transport.server}/v1/jobs", headers=tampered)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert isinstance(transport.call("GET", "/v1/jobs"), (list, dict)), "the same request, signed, is answered"


def test_the_ca_is_trusted_on_first_use_pinned_and_a_changed_one_refused(server: LocalCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Client.connect(server.url, home=home) as client:
        assert client.jobs() == []
    pins = list((home / "servers").glob("*.ca.pem"))
    assert [pin.name for pin in pins] == [f"127.0.0.1_{server.url.rsplit(':', 1)[1]}.ca.pem"]
    pinned = ssl.PEM_cert_to_DER_cert(pins[0].read_text())
    assert pinned == ssl.PEM_cert_to_DER_cert(server.ca_file.read_text()), "the server's own CA was pinned"
    # Once pinned, only that CA is trusted: another in the pin is an impostor's.
    pins[0].write_text(_another_ca())
    with pytest.raises(idlegrid.UntrustedServerError, match="not from the certificate authority"):
        Client.connect(server.url, home=home)


def test_a_development_server_over_plain_http_works_with_signatures_alone(tasks: Path, tmp_path: Path) -> None:
    with start_cluster(tmp_path, cores=1, plain_http=True) as cluster:
        assert cluster.ca_file is None
        with cluster.client(poll_wait=5.0) as client:
            noop = client.upload_file(tasks / "noop.wasm", "executable")
            finals = _run(client, [TaskSpec(i, noop, params=f"{i}") for i in range(5)])
            assert {i: client.fetch(s.result) for i, s in finals.items()} == {i: str(i).encode() for i in range(5)}  # type: ignore[arg-type]


def test_the_command_line_and_the_python_client_share_a_home(server: LocalCluster, tasks: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Client.connect(server.url, server_ca=server.ca_file, home=home) as client:
        noop = client.upload_file(tasks / "noop.wasm", "executable")
        job = client.submit([TaskSpec(0, noop, params="shared")], JobProperties(name="from-python")).job
        wait_for("the job to complete", lambda: client.job(job).state == JobState.COMPLETED)
    status = subprocess.run(
        [str(idlegrid_binary()), "--home", str(home), "--server", server.url, "--server-ca", str(server.ca_file)]
        + ["job", "status", job],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert status.returncode == 0, status.stderr
    assert "completed" in status.stdout and "from-python" in status.stdout, status.stdout


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(idlegrid.NetworkError, match="cannot reach"):
        Client.connect("https://127.0.0.1:9", home=tmp_path, connect_give_up_after=0.5)
    with pytest.raises(idlegrid.IdlegridError, match="must start with https://"):
        Client.connect("ftp://example", home=tmp_path)


def _another_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_api_errors_carry_status_and_code(client: Client) -> None:
    with pytest.raises(ApiError) as error:
        client.transport.call("GET", "/v1/ops/status")
    assert error.value.status == 403 and error.value.code == "forbidden"
    assert "only: operator" in error.value.message


def test_a_channel_that_lost_track_resets_and_goes_on(server: LocalCluster) -> None:
    assert server.ca_file is not None
    transport = idlegrid.Transport(server.url, idlegrid.Identity.generate(), ca_pem=server.ca_file.read_text())
    transport.register("client", "channel-test")
    channel = idlegrid.Channel.open(transport)

    def poll_until(channel: idlegrid.Channel, count: int) -> list[int | None]:
        received: list[int | None] = []
        deadline = time.monotonic() + PATIENCE
        while len(received) < count and time.monotonic() < deadline:
            received += [message.reply_to for message in channel.poll(1.0)]
        return received

    assert channel.send([{"type": "GetConfig"}, {"type": "GetContents"}])[0] == 1
    assert poll_until(channel, 2) == [1, 2]
    # A second copy of the party that knows only the session's name: it adopts the server's
    # positions. Nothing was released, so both answers come again, then the new one's.
    lost = idlegrid.Channel.open(transport, resume=channel.session)
    assert lost.reset().inbound_acked == 2
    assert lost.send([{"type": "GetContents"}])[0] == 3, "numbering continues after what the server processed"
    assert poll_until(lost, 3) == [1, 2, 3]
    transport.close()
