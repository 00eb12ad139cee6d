"""A bounded byte reader: every short read becomes an AttestFormatError naming the field."""

from __future__ import annotations

from trustd.shared.attest.errors import AttestFormatError


class Reader:
    """Reads fixed-size integers and sized buffers from ``data``, never past its end.

    Sizes read from the data are checked against what is left *before* anything is sliced,
    so a huge declared size costs nothing.
    """

    __slots__ = ("_data", "_little", "_pos", "structure")

    def __init__(self, data: bytes, structure: str, *, little: bool = False) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self._little = little
        self.structure = structure

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fail(self, field: str, problem: str) -> AttestFormatError:
        return AttestFormatError(self.structure, field, problem)

    def take(self, size: int, field: str) -> bytes:
        if size < 0 or size > self.remaining:
            raise self.fail(
                field, f"needs {size} bytes at offset {self._pos}, only {self.remaining} left"
            )
        out = bytes(self._data[self._pos : self._pos + size])
        self._pos += size
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little" if self._little else "big")

    def u8(self, field: str) -> int:
        return self.uint(1, field)

    def u16(self, field: str) -> int:
        return self.uint(2, field)

    def u32(self, field: str) -> int:
        return self.uint(4, field)

    def u64(self, field: str) -> int:
        return self.uint(8, field)

    def sized(self, field: str, *, max_size: int) -> bytes:
        """A TPM2B: a 16-bit size then that many bytes, at most ``max_size``."""
        size = self.u16(f"{field}.size")
        if size > max_size:
            raise self.fail(f"{field}.size", f"{size} is larger than the maximum {max_size}")
        return self.take(size, field)

    def end(self) -> None:
        if self.remaining:
            raise self.fail("(end)", f"{self.remaining} trailing bytes at offset {self._pos}")
