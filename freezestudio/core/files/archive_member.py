"""Random access to a member of a zip archive, for h5py.

`zipfile.ZipFile.open` gives a stream that re-reads the member from its start for every
backward seek; h5py seeks all over an HDF5 file, so reading the dataset shapes of a
`.keras` archive's weights that way costs seconds on a 150-layer model. Keras writes its
archives' members stored (uncompressed), so a stored member is read in place, as a window
onto the archive file; any other member goes through `zipfile` as before.
"""

from __future__ import annotations

import io
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path

_LOCAL_HEADER = struct.Struct("<4s22xHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


class _StoredMember(io.RawIOBase):
    """A read-only, seekable window onto `size` bytes of a file from `start`."""

    def __init__(self, handle, start: int, size: int):
        super().__init__()
        self._handle, self._start, self._size, self._pos = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self._size - self._pos))
        self._handle.seek(self._start + self._pos)
        data = self._handle.read(count)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


@contextmanager
def open_member(path: Path, archive: zipfile.ZipFile, name: str):
    """A seekable binary file of the member `name` of `archive` (opened from `path`).

    Raises:
        KeyError: no such member; zipfile's and OSError's errors for a corrupt archive.
    """
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed, encrypted
        with archive.open(info) as member:
            yield member
        return
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(
            handle.read(_LOCAL_HEADER.size))
        if signature != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"bad local header for {name}")
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        with _StoredMember(handle, start, info.file_size) as member:
            yield member
