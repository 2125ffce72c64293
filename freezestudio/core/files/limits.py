"""Bounds a model file must respect before any loader (ours, h5py's deep reads, Keras's)
sees it, so a hostile file is refused with one line instead of exhausting the stack,
memory or disk (docs/architecture.md, Known traps).

Each check raises `ModelFileError` naming the file and the bound it breaks:

- stored configuration JSON: at most `MAX_CONFIG_BYTES`, nested at most `MAX_JSON_DEPTH`
  deep (measured on the raw text before `json.loads`, which would otherwise recurse out);
- `.keras` (zip) archives: at most `MAX_ZIP_MEMBERS` members, at most
  `MAX_ARCHIVE_BYTES` once inflated, and no member inflating more than
  `MAX_COMPRESSION_RATIO` times its compressed size once it is above
  `RATIO_CHECKED_ABOVE` (a zip bomb);
- HDF5 (`.h5`, and the weights inside a `.keras`): no dataset declaring more than
  `MAX_DATASET_BYTES`, or more than `MAX_COMPRESSION_RATIO` times what it stores once above
  `RATIO_CHECKED_ABOVE` (an unallocated or sparse dataset that would inflate when read),
  and at most `MAX_ARCHIVE_BYTES` declared in all; at most `MAX_H5_OBJECTS` groups and
  datasets (each visited once: hard links can form cycles); no fixed-size attribute larger
  than `MAX_CONFIG_BYTES` (a variable-length string attribute is bounded by
  `parse_config` when it is read).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from freezestudio.core.errors import ModelFileError

MAX_JSON_DEPTH = 128
MAX_CONFIG_BYTES = 32 * 2**20
MAX_ZIP_MEMBERS = 10_000
MAX_ARCHIVE_BYTES = 64 * 2**30
MAX_DATASET_BYTES = 16 * 2**30
MAX_COMPRESSION_RATIO = 200
RATIO_CHECKED_ABOVE = 64 * 2**20
MAX_H5_OBJECTS = 200_000

# A JSON string, escapes included (the unrolled form: no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def json_depth(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, without recursing."""
    import numpy as np

    text = _JSON_STRING.sub(b'""', raw)
    codes = np.frombuffer(text, dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def parse_config(raw, path, what: str = "the stored model config"):
    """Parses a stored JSON configuration within the size and depth bounds.

    Args:
        raw: the JSON text (str or bytes).
        path: the model file, for the message.
        what: what the text is, for the message.

    Raises:
        ModelFileError: too large, too deeply nested, or not valid JSON.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{path}: {what} is {_size(len(data))}, more than the "
                             f"{_size(MAX_CONFIG_BYTES)} FreezeStudio reads")
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise ModelFileError(f"{path}: {what} nests {depth} levels deep, more than the "
                             f"{MAX_JSON_DEPTH} a model config can plausibly need")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ModelFileError(f"{path}: {what} is not valid JSON ({exc})") from None


def check_archive(archive: zipfile.ZipFile, path) -> None:
    """Refuses zip bombs: too many members, too much inflated, an implausible ratio."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise ModelFileError(f"{path}: the archive has {len(members)} members, more than the "
                             f"{MAX_ZIP_MEMBERS} a Keras model archive can plausibly hold")
    total = sum(member.file_size for member in members)
    if total > MAX_ARCHIVE_BYTES:
        raise ModelFileError(f"{path}: the archive inflates to {_size(total)}, more than "
                             f"{_size(MAX_ARCHIVE_BYTES)}")
    for member in members:
        if (member.file_size > RATIO_CHECKED_ABOVE
                and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)):
            raise ModelFileError(
                f"{path}: the member {member.filename} inflates {_size(member.compress_size)} "
                f"to {_size(member.file_size)} (a zip bomb?), more than "
                f"{MAX_COMPRESSION_RATIO} times")


def check_member_size(member: zipfile.ZipInfo, path, limit: int = MAX_CONFIG_BYTES) -> None:
    """Refuses a member that inflates beyond `limit` before it is read into memory."""
    if member.file_size > limit:
        raise ModelFileError(f"{path}: the member {member.filename} inflates to "
                             f"{_size(member.file_size)}, more than the {_size(limit)} "
                             "FreezeStudio reads")


def check_h5(handle, path) -> None:
    """Refuses HDF5 datasets and attributes whose declared size is beyond the bounds.

    Args:
        handle: an open `h5py.File` (or group).
        path: the model file, for the message.
    """
    import h5py

    declared = 0
    stack = [handle]
    seen = {hash(handle.id)}  # hard links can form cycles: visit each object once
    while stack:
        group = stack.pop()
        _check_attributes(group, path)
        for name in group:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                continue  # soft/external links point elsewhere; Keras never writes them
            item = group[name]
            if hash(item.id) in seen:
                continue
            seen.add(hash(item.id))
            if len(seen) > MAX_H5_OBJECTS:
                raise ModelFileError(f"{path}: holds more than {MAX_H5_OBJECTS} HDF5 "
                                     "objects, more than a model can plausibly need")
            if isinstance(item, h5py.Group):
                stack.append(item)
                continue
            if not isinstance(item, h5py.Dataset):
                continue
            _check_attributes(item, path)
            size = _dataset_bytes(item)
            stored = item.id.get_storage_size()
            if size > MAX_DATASET_BYTES or (
                    size > RATIO_CHECKED_ABOVE and size > MAX_COMPRESSION_RATIO * max(stored, 1)):
                raise ModelFileError(
                    f"{path}: the dataset {item.name} declares shape {item.shape} "
                    f"({_size(size)}) but stores {_size(stored)}: not a plausible weight")
            declared += size
            if declared > MAX_ARCHIVE_BYTES:
                raise ModelFileError(f"{path}: the datasets declare more than "
                                     f"{_size(MAX_ARCHIVE_BYTES)} of weights")


def _dataset_bytes(dataset) -> int:
    count = 1
    for extent in dataset.shape or ():
        count *= int(extent)
    return count * max(int(dataset.dtype.itemsize), 1)


def _check_attributes(item, path) -> None:
    for name in item.attrs:
        try:
            size = item.attrs.get_id(name).get_storage_size()
        except (OSError, RuntimeError):  # HDF5 reports an empty attribute's size as an error
            continue
        if size > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{path}: the attribute {name!r} of {item.name} is "
                                 f"{_size(size)}, more than {_size(MAX_CONFIG_BYTES)}")


def check_h5_file(path: Path) -> None:
    """`check_h5` on an `.h5` file, a corrupt file reported as such."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            check_h5(handle, path)
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated HDF5 file ({exc})") from None
