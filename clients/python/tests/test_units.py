"""The parts of the client that need no server: keys and signatures, stripping executables,
the JSON form of the wire types."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from idlegrid import IdlegridError, Identity, InvalidExecutableError, JobProperties, TaskSpec, TaskStatus, TaskState
from idlegrid.types import ElementRef, JobInfo, JobState
from idlegrid.wasm import strip_custom_sections


def test_the_id_is_the_hash_of_the_public_key_and_signatures_cover_every_part() -> None:
    identity = Identity(bytes(range(32)))
    assert identity.id == hashlib.sha256(identity.public_key).hexdigest()[:32]
    headers = identity.sign("post", "/v1/sessions?x=1", 1_000_000, "ab" * 32)
    key = Ed25519PublicKey.from_public_bytes(identity.public_key)
    signed = f"idlegrid-v1\nPOST\n/v1/sessions?x=1\n1000000\n{'ab' * 32}".encode()
    key.verify(bytes.fromhex(headers.signature), signed)  # raises if it does not match
    assert headers.as_dict() == {
        "x-idlegrid-id": identity.id,
        "x-idlegrid-time": "1000000",
        "x-idlegrid-signature": headers.signature,
    }
    other = identity.sign("POST", "/v1/sessions?x=2", 1_000_000, "ab" * 32)
    assert other.signature != headers.signature


def test_a_key_file_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "client.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load_or_create(path).id == first.id
    assert len(path.read_text().strip()) == 64, "the seed in hex, as the command line writes it"
    path.write_text("garbage")
    with pytest.raises(IdlegridError, match="not a 64-character hex key"):
        Identity.load_or_create(path)


def _section(section_id: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([section_id, len(payload)]) + payload


def test_custom_sections_are_stripped_and_everything_else_kept() -> None:
    header = b"\0asm\x01\0\0\0"
    type_section = _section(1, b"\x01\x60\x00\x00")
    name = _section(0, b"\x04name" + b"secret-project")
    # A section whose size is written in more bytes than needed is re-encoded in the shortest.
    padded_function = bytes([3, 0x82, 0x00]) + b"\x01\x00"
    module = header + name + type_section + padded_function + _section(0, b"\x09producers")
    stripped = strip_custom_sections(module, "task.wasm")
    assert stripped == header + type_section + _section(3, b"\x01\x00")
    assert b"secret-project" not in stripped
    assert strip_custom_sections(stripped) == stripped, "stripping twice changes nothing"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"#!/bin/sh\necho hello\n", "not a WebAssembly module"),
        (b"\0asm\x0d\x00\x01\x00", "component"),
        (b"\0asm\x01\0\0\0\x01\x10\x00", "runs past the end"),
        (b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\xff", "longer than 5 bytes"),
    ],
)
def test_what_is_not_a_core_module_is_refused_by_name(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidExecutableError, match=reason) as error:
        strip_custom_sections(data, "script.sh")
    assert "'script.sh'" in str(error.value)


def test_task_specs_and_job_properties_take_the_wire_form() -> None:
    element = ElementRef("ab" * 32, 10)
    spec = TaskSpec(3, element, params="n=5", data={"input": "cd" * 32}, priority=2)
    assert spec.to_json() == {
        "index": 3,
        "executable": "ab" * 32,
        "data": {"input": "cd" * 32},
        "params": base64.b64encode(b"n=5").decode(),
        "priority": 2,
    }
    assert "priority" not in TaskSpec(0, "ab" * 32).to_json()
    properties = JobProperties(name="x", cost_max_micros=5, extra={"validation": {"kind": "none"}})
    wire = properties.to_json()
    assert wire["cost_max_micros"] == 5 and "deadline_unix_ms" not in wire
    assert wire["validation"] == {"kind": "none"}
    assert JobProperties.from_json(wire) == properties


def test_statuses_decode_with_payloads_and_failures() -> None:
    counts = {"created": 0, "queued": 1, "running": 0, "stopped": 0, "succeeded": 2, "failed": 1}
    status = TaskStatus.from_json(
        {
            "type": "TaskStatus",
            "job": "j",
            "task": 4,
            "state": "failed",
            "progress": 0.5,
            "result": {"element": {"hash": "ab" * 32, "size": 3}},
            "status": {"inline": base64.b64encode(b"half").decode()},
            "failure": {"kind": "trap", "message": "boom"},
            "cpu_ms": 7,
            "attempts": 1,
            "counts": counts,
        }
    )
    assert status.state is TaskState.FAILED and status.final
    assert status.result is not None and status.result.element == ElementRef("ab" * 32, 3)
    assert status.status is not None and status.status.inline == b"half"
    assert status.failure is not None and status.failure.kind == "trap"
    assert status.counts.total == 4 and status.counts.concluded == 3
    info = JobInfo.from_json(
        {"job": "j", "properties": {}, "state": "completed", "counts": counts, "created_unix_ms": 1}
    )
    assert info.state is JobState.COMPLETED
