"""Executables are shipped without names: before an executable element leaves the client,
every custom section of the WebAssembly module (function names, producers, DWARF debug
information, anything else) is removed, so that the engines that run it learn nothing about
the client's project. Every other section is kept in order, byte for byte, with its size in
the shortest encoding: the result is the same as the Rust client's, so both upload the same
element for the same module.

Only the module's framing is checked here (header, section bounds); engines validate the
code itself and fail a task whose module is invalid with ``invalid_module``.
"""

from __future__ import annotations

from .errors import InvalidExecutableError

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\x00\x00\x00"
_CUSTOM_SECTION = 0


def _read_u32(data: bytes, offset: int) -> tuple[int, int]:
    """A LEB128 unsigned 32-bit number at ``offset``: its value and the offset after it."""
    value = 0
    for shift in range(0, 35, 7):
        if offset >= len(data):
            raise ValueError("a section size runs past the end of the module")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte & 0x80 == 0:
            if value >= 1 << 32:
                raise ValueError("a section size does not fit in 32 bits")
            return value, offset
    raise ValueError("a section size is longer than 5 bytes")


def _write_u32(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def strip_custom_sections(module: bytes, name: str = "") -> bytes:
    """``module`` without its custom sections; raises :class:`InvalidExecutableError` for
    bytes that are not a core WebAssembly module."""
    label = name or "(unnamed)"
    if module[:4] != _MAGIC:
        raise InvalidExecutableError(f"the executable '{label}' is not a WebAssembly module (no \\0asm header)")
    if module[4:8] != _CORE_VERSION:
        raise InvalidExecutableError(
            f"the executable '{label}' is a WebAssembly component or of an unknown version, not a core module"
        )
    out = bytearray(module[:8])
    offset = 8
    try:
        while offset < len(module):
            section = module[offset]
            size, start = _read_u32(module, offset + 1)
            end = start + size
            if end > len(module):
                raise ValueError(f"section {section} runs past the end of the module")
            if section != _CUSTOM_SECTION:
                out.append(section)
                out += _write_u32(size)
                out += module[start:end]
            offset = end
    except ValueError as error:
        raise InvalidExecutableError(f"the executable '{label}' is not a valid WebAssembly module: {error}") from None
    return bytes(out)
