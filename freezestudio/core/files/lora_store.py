"""LoRA adapters' own values stored inside a saved model, where Keras ignores them.

Keras saves an adapted layer with its kernel merged (`.keras`) and reloads both adapter
matrices as zeros; so that a saved model trains again with its adapters live, each
adapter's base kernel, matrices and alpha are stored beside FreezeStudio's state:

- `.keras` archive: an extra member `freezestudio_lora.npz` (numpy's format, no pickle);
- `.h5`: a root group `freezestudio_lora`.

Entries are numbered; `ids` and `alphas` list them: `{"id", "alpha", "kernel", "a", "b"}`.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from freezestudio.core.errors import ModelFileError
from freezestudio.core.files import formats, limits

_MEMBER = "freezestudio_lora.npz"
_H5_GROUP = "freezestudio_lora"
_PARTS = ("kernel", "a", "b")


def adapter_entries(adapters) -> list[dict]:
    """The entries of the document's live adapters (values copied now)."""
    from freezestudio.core.model.tree import base_variable

    return [{"id": a.id, "alpha": float(a.alpha),
             "kernel": np.asarray(base_variable(a.layer).numpy()),
             "a": np.asarray(a.layer.lora_kernel_a.numpy()),
             "b": np.asarray(a.layer.lora_kernel_b.numpy())} for a in adapters]


def write_adapters(path: Path, fmt: str, entries: list[dict]) -> None:
    """Adds the entries to a freshly written `.keras`/`.h5` file (nothing if empty)."""
    if not entries:
        return
    arrays = {f"{part}_{i}": entry[part] for i, entry in enumerate(entries) for part in _PARTS}
    header = json.dumps({"ids": [e["id"] for e in entries],
                         "alphas": [e["alpha"] for e in entries]})
    if fmt == formats.KERAS:
        buffer = io.BytesIO()
        np.savez(buffer, header=np.array(header), **arrays)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(_MEMBER, buffer.getvalue())
    elif fmt == formats.H5:
        import h5py

        with h5py.File(path, "a") as handle:
            group = handle.create_group(_H5_GROUP)
            group.attrs["header"] = header
            for name, value in arrays.items():
                group.create_dataset(name, data=value)


def read_adapters(path: Path, fmt: str) -> list[dict]:
    """The stored entries of a model file; empty if it has none or they are unreadable."""
    try:
        header, arrays = _read_raw(Path(path), fmt)
        if header is None:
            return []
        meta = json.loads(header)
        return [{"id": str(key), "alpha": float(alpha),
                 **{part: arrays[f"{part}_{i}"] for part in _PARTS}}
                for i, (key, alpha) in enumerate(zip(meta["ids"], meta["alphas"],
                                                     strict=True))]
    except (ModelFileError, OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return []  # opened without them: the adapters start afresh (a note says so)


def _read_raw(path: Path, fmt: str):
    if fmt == formats.KERAS:
        with zipfile.ZipFile(path) as archive:
            if _MEMBER not in archive.namelist():
                return None, {}
            member = archive.getinfo(_MEMBER)
            limits.check_member_size(member, path, limits.MAX_DATASET_BYTES)
            with np.load(io.BytesIO(archive.read(member)), allow_pickle=False) as data:
                return str(data["header"]), {k: data[k] for k in data.files if k != "header"}
    if fmt == formats.H5:
        import h5py

        with h5py.File(path, "r") as handle:
            group = handle.get(_H5_GROUP)
            if group is None:
                return None, {}
            return str(group.attrs["header"]), {k: np.asarray(group[k]) for k in group}
    return None, {}
