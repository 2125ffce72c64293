"""A hostile-file corpus: every mutated or crafted model file is exit 0 or one-line exit 2.

The corpus is generated at test time with a fixed seed from small real architectures
(branches, a nested model, Embedding+LSTM, a BatchNorm CNN, MultiHeadAttention), saved as
.keras and .h5, then mutated: truncations, bit flips, deeply nested and huge configs, zip
bombs, NaN weights (must load), wrong dtypes and shapes, duplicate layer names, missing
members, undeclared-size datasets. Most files go in-process through `open_document` (in
one helper process, under a timeout and a memory bound), a seeded sample through the real
CLI. Run with -s to see the outcome counts.
"""

from __future__ import annotations

import collections
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest

MEMORY_BOUND = 4 * 2**30  # RLIMIT_AS of each child process
WORKER_TIMEOUT = 600
CLI_TIMEOUT = 120
CLI_SAMPLE = 8  # the default suite; the slow test runs 20 and more seeds
SLOW_CLI_SAMPLE = 20
SEED = 20261202


def _bound_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


# --- architectures ---------------------------------------------------------------------

def _branches(keras):
    inputs = keras.Input((6,), name="x")
    left = keras.layers.Dense(4, activation="relu", name="left")(inputs)
    right = keras.layers.Dense(4, activation="tanh", name="right")(inputs)
    merged = keras.layers.Concatenate(name="merge")([left, right])
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(merged), name="branches")


def _nested(keras):
    inner_in = keras.Input((5,))
    inner = keras.Model(inner_in, keras.layers.Dense(3, name="b1")(inner_in), name="backbone")
    inputs = keras.Input((5,), name="x")
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    return keras.Model(inputs, outputs, name="nested")


def _text(keras):
    inputs = keras.Input((7,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(30, 4, name="embedding")(inputs)
    x = keras.layers.LSTM(3, name="lstm")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="text")


def _cnn(keras):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="cnn")


def _attention(keras):
    inputs = keras.Input((4, 6), name="seq")
    x = keras.layers.MultiHeadAttention(2, 3, name="mha")(inputs, inputs)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="attention")


ARCHITECTURES = {"branches": _branches, "nested": _nested, "text": _text, "cnn": _cnn,
                 "attention": _attention}


# --- mutations -------------------------------------------------------------------------

def _zip_members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _nest(depth, leaf=0):
    return "[" * depth + json.dumps(leaf) + "]" * depth


def _layer_configs(config):
    """The layer config dicts of a (nested) model config, outer first."""
    layers = config.get("config", {}).get("layers", [])
    for layer in layers:
        yield layer
        yield from _layer_configs(layer)


def _with_config(original, target, change, fmt):
    """A copy of `original` whose model config is `change(config)` (a str: raw JSON)."""
    import h5py

    if fmt == "keras":
        members = _zip_members(original)
        config = json.loads(members["config.json"])
        result = change(config)
        members["config.json"] = result if isinstance(result, str) else json.dumps(config)
        _write_zip(target, members)
    else:
        shutil.copy(original, target)
        with h5py.File(target, "r+") as handle:
            config = json.loads(handle.attrs["model_config"])
            result = change(config)
            handle.attrs["model_config"] = (result if isinstance(result, str)
                                            else json.dumps(config))
    return target


def _first_dataset(handle):
    found = []
    handle.visititems(lambda name, item: found.append(name) if hasattr(item, "shape")
                      and item.shape else None)
    return found[0]


def _edit_weights(original, target, edit, fmt):
    """A copy of `original` with `edit(h5py.File)` applied to its weights."""
    import h5py

    if fmt == "h5":
        shutil.copy(original, target)
        with h5py.File(target, "r+") as handle:
            edit(handle)
        return target
    members = _zip_members(original)
    scratch = Path(str(target) + ".weights.h5")
    scratch.write_bytes(members["model.weights.h5"])
    with h5py.File(scratch, "r+") as handle:
        edit(handle)
    members["model.weights.h5"] = scratch.read_bytes()
    scratch.unlink()
    _write_zip(target, members)
    return target


def _replace_dataset(name_fn, make):
    def edit(handle):
        name = name_fn(handle)
        del handle[name]
        make(handle, name)
    return edit


def _mutations(source, fmt, folder, rng, arch, thorough):
    """{case name: (path, expectation)}: "ok", "error" or "any"."""
    stem = f"{arch}_{fmt}"
    data = source.read_bytes()
    out = {}

    def add(case, path, expect="any"):
        out[f"{stem}_{case}"] = (path, expect)

    def file(case):
        return folder / f"{stem}_{case}.{fmt}"

    for fraction in (0.1, 0.5, 0.9, 0.999) if thorough else (0.3, 0.999):
        path = file(f"trunc{fraction}")
        path.write_bytes(data[: int(len(data) * fraction)])
        add(f"trunc{fraction}", path, "error")
    for index in range(6 if thorough else 2):
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 40))):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        path = file(f"flip{index}")
        path.write_bytes(bytes(flipped))
        add(f"flip{index}", path)

    def deep_config(depth):
        def change(config):
            layer = next(_layer_configs(config))
            layer["config"]["hostile"] = "__NEST__"
            return json.dumps(config).replace('"__NEST__"', _nest(depth))
        return change

    for depth in (100, 2000, 100_000) if thorough else (100, 100_000):
        add(f"nested{depth}", _with_config(source, file(f"nested{depth}"), deep_config(depth),
                                           fmt), "error" if depth > 128 else "any")
    add("config_not_json", _with_config(source, file("config_not_json"),
                                        lambda c: "{not json", fmt), "error")
    add("config_list", _with_config(source, file("config_list"), lambda c: "[1, 2]", fmt),
        "error")

    def duplicate(config):
        layers = list(_layer_configs(config))
        named = [layer for layer in layers if layer.get("class_name") != "InputLayer"]
        named[-1]["config"]["name"] = named[0]["config"]["name"]

    add("duplicate_names", _with_config(source, file("duplicate_names"), duplicate, fmt))

    def bad_dtype(config):
        for layer in _layer_configs(config):
            if layer.get("class_name") != "InputLayer":
                layer["config"]["dtype"] = "float7"

    add("config_dtype", _with_config(source, file("config_dtype"), bad_dtype, fmt))

    def huge_int(config):
        for layer in _layer_configs(config):
            if "units" in layer.get("config", {}):
                layer["config"]["units"] = 2**70
                return
        next(_layer_configs(config))["config"]["name"] = 2**70

    add("config_overflow", _with_config(source, file("config_overflow"), huge_int, fmt))

    def unknown_class(config):
        for layer in _layer_configs(config):
            if layer.get("class_name") != "InputLayer":
                layer["class_name"] = "NoSuchLayer"
                return

    add("config_unknown_class", _with_config(source, file("config_unknown_class"),
                                             unknown_class, fmt), "error")

    def nan_weights(handle):
        def visit(name, item):
            if hasattr(item, "shape") and item.dtype.kind == "f" and item.shape:
                item[...] = np.nan
        handle.visititems(visit)

    add("nan_weights", _edit_weights(source, file("nan_weights"), nan_weights, fmt), "ok")
    add("int_weights", _edit_weights(source, file("int_weights"), _replace_dataset(
        _first_dataset, lambda h, n: h.create_dataset(n, data=np.zeros(3, "int64"))), fmt))
    add("string_weights", _edit_weights(source, file("string_weights"), _replace_dataset(
        _first_dataset, lambda h, n: h.create_dataset(n, data=np.array([b"x", b"yy"]))), fmt))
    add("wrong_shape", _edit_weights(source, file("wrong_shape"), _replace_dataset(
        _first_dataset, lambda h, n: h.create_dataset(n, data=np.zeros((2, 9), "f4"))), fmt),
        "error")
    add("huge_declared_shape", _edit_weights(source, file("huge_declared_shape"),
                                             _replace_dataset(_first_dataset, lambda h, n:
                                             h.create_dataset(n, shape=(10**6, 10**6),
                                                              dtype="f4")), fmt), "error")
    add("dropped_dataset", _edit_weights(source, file("dropped_dataset"),
                                         lambda h: h.__delitem__(_first_dataset(h)), fmt))
    if fmt == "keras":
        members = _zip_members(source)
        for missing in ("config.json", "metadata.json", "model.weights.h5"):
            path = file(f"no_{missing.replace('.', '_')}")
            _write_zip(path, {k: v for k, v in members.items() if k != missing})
            add(f"no_{missing.replace('.', '_')}", path)
        path = file("bomb_config")
        _write_zip(path, {**members, "config.json": b" " * (33 * 2**20)},
                   zipfile.ZIP_DEFLATED)
        add("bomb_config", path, "error")
        path = file("bomb_weights")
        _write_zip(path, {**members, "model.weights.h5": b"\0" * (80 * 2**20)},
                   zipfile.ZIP_DEFLATED)
        add("bomb_weights", path, "error")
        path = file("state_nested")
        _write_zip(path, {**members, "freezestudio.json": _nest(100_000)})
        add("state_nested", path, "ok")
        path = file("state_garbage")
        _write_zip(path, {**members, "freezestudio.json": '{"freezestudio_state": 1, '
                                                          '"plan": [1, {"x": null}]}'})
        add("state_garbage", path, "ok")
    else:
        import h5py

        path = file("state_nested")
        shutil.copy(source, path)
        with h5py.File(path, "r+") as handle:
            handle.attrs["freezestudio"] = _nest(5000)
        add("state_nested", path, "ok")
        path = file("no_weights_group")
        shutil.copy(source, path)
        with h5py.File(path, "r+") as handle:
            del handle["model_weights"]
        add("no_weights_group", path)
        path = file("config_bytes_array")
        shutil.copy(source, path)
        with h5py.File(path, "r+") as handle:
            handle.attrs["model_config"] = np.arange(5)
        add("config_bytes_array", path, "error")
    return out


def build_corpus(folder: Path, thorough: bool = False) -> dict:
    """{case: (path, expectation)} over every architecture, in .keras and .h5."""
    from freezestudio.core.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    corpus = {}
    for arch, build in ARCHITECTURES.items():
        model = build(keras)
        for fmt in ("keras", "h5"):
            source = folder / f"{arch}.{fmt}"
            model.save(source)
            corpus[f"{arch}_{fmt}_original"] = (source, "ok")
            corpus.update(_mutations(source, fmt, folder, rng, arch, thorough))
    npz = folder / "data.npz"
    np.savez(npz, x=np.zeros((3, 2)), y=np.zeros(3))
    corpus["npz_as_keras"] = (npz.rename(folder / "data.keras"), "error")
    np.savez(npz, x=np.zeros((3, 2)))
    corpus["npz"] = (npz, "error")
    (folder / "table.csv").write_text("a,b,label\n1,2,0\n")
    corpus["csv"] = (folder / "table.csv", "error")
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    corpus["png"] = (folder / "picture.png", "error")
    (folder / "empty.h5").write_bytes(b"")
    corpus["empty"] = (folder / "empty.h5", "error")
    (folder / "images" / "cat").mkdir(parents=True)
    (folder / "images" / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    corpus["image_folder"] = (folder / "images", "error")
    many = folder / "many_members.keras"
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("config.json", "{}")
        for index in range(10_001):
            archive.writestr(f"assets/{index}", b"")
    corpus["many_members"] = (many, "error")
    return corpus


# --- running ---------------------------------------------------------------------------

def _worker(list_file: str) -> None:
    """Opens every path listed (one per line), printing one JSON outcome line each."""
    from freezestudio.core.errors import UserError
    from freezestudio.core.files.loading import open_document

    for line in Path(list_file).read_text().splitlines():
        print(json.dumps({"path": line, "started": True}), flush=True)
        try:
            open_document(line)
            outcome = {"path": line, "outcome": "ok"}
        except UserError as exc:
            outcome = {"path": line, "outcome": "user_error", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - that is what the test looks for
            outcome = {"path": line, "outcome": "bug",
                       "message": f"{type(exc).__name__}: {exc}"[:500],
                       "traceback": traceback.format_exc()[-3000:]}
        print(json.dumps(outcome), flush=True)


def run_in_process(paths, folder: Path) -> dict:
    """{path: outcome dict} from one bounded helper process; a crash or hang is named."""
    list_file = folder / "paths.txt"
    list_file.write_text("\n".join(map(str, paths)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "QT_QPA_PLATFORM": "offscreen"}
    tests = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, __file__, "worker", str(list_file)],
                          capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT,
                          preexec_fn=_bound_memory)
    outcomes, started = {}, None
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("started"):
            started = record["path"]
        else:
            outcomes[record["path"]] = record
    assert done.returncode == 0, (f"the helper died (rc {done.returncode}) on {started}",
                                  done.stderr[-3000:])
    return outcomes


def run_cli_bounded(*args):
    from cli_runner import Run, cli_env

    command = [sys.executable, "-m", "freezestudio", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(),
                          timeout=CLI_TIMEOUT, preexec_fn=_bound_memory)
    return Run(tuple(map(str, args)), done.returncode, done.stdout, done.stderr)


def _check(corpus, outcomes):
    counts = collections.Counter()
    problems = []
    for case, (path, expect) in sorted(corpus.items()):
        record = outcomes.get(str(path))
        if record is None:
            problems.append(f"{case}: no outcome")
            continue
        outcome = record["outcome"]
        counts[outcome] += 1
        if outcome == "bug":
            problems.append(f"{case}: {record['message']}\n{record['traceback']}")
        elif outcome == "user_error":
            message = record["message"]
            if "\n" in message or Path(path).name not in message:
                problems.append(f"{case}: not one line naming the file: {message!r}")
            if expect == "ok":
                problems.append(f"{case}: expected to load, got {message!r}")
        elif expect == "error":
            problems.append(f"{case}: expected a user error, but it loaded")
    return counts, problems


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder)


@pytest.fixture(scope="module")
def outcomes(corpus):
    folder, cases = corpus
    return run_in_process([path for path, _ in cases.values()], folder)


def test_every_hostile_file_opens_or_is_a_one_line_user_error(corpus, outcomes):
    folder, cases = corpus
    counts, problems = _check(cases, outcomes)
    print(f"\nhostile corpus, in-process: {len(cases)} files: {dict(counts)}")
    assert not problems, "\n".join(problems)
    assert counts["ok"] and counts["user_error"]


def _cli_sample(cases, size):
    rng = random.Random(SEED)
    names = sorted(cases)
    chosen = rng.sample(names, min(size, len(names)))
    for must in ("npz", "cnn_keras_nested100000", "text_keras_bomb_weights"):
        if must in cases and must not in chosen:
            chosen[0:1] = []
            chosen.append(must)
    return chosen


def _cli_check(cases, chosen, workers=2):
    from concurrent.futures import ThreadPoolExecutor

    from cli_runner import assert_user_error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = list(pool.map(lambda case: run_cli_bounded("inspect", cases[case][0]), chosen))
    counts = collections.Counter()
    for case, run in zip(chosen, runs, strict=True):
        counts[run.returncode] += 1
        if run.returncode == 0:
            assert cases[case][1] != "error", (case, run.stdout[-500:])
        else:
            assert_user_error(run, Path(cases[case][0]).name)
    print(f"\nhostile corpus, CLI sample: {len(chosen)} files: exit codes {dict(counts)}")
    return counts


def test_a_seeded_sample_through_the_cli(corpus):
    _, cases = corpus
    _cli_check(cases, _cli_sample(cases, CLI_SAMPLE))


def test_npz_is_called_data_whatever_its_name(corpus, outcomes):
    folder, cases = corpus
    for case in ("npz", "npz_as_keras"):
        message = outcomes[str(cases[case][0])]["message"]
        assert "NumPy .npz" in message and "rename" not in message, message
    assert "CSV" in outcomes[str(cases["csv"][0])]["message"]
    assert "images" in outcomes[str(cases["image_folder"][0])]["message"]


def test_json_depth_counts_brackets_outside_strings_only():
    from freezestudio.core.files.limits import json_depth

    assert json_depth(b'{"a": "[[[[{{", "b\\"[": [[1]], "c": {}}') == 3
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000
    assert json_depth(b"7") == 0


def test_zip_bomb_and_member_count_bounds(tmp_path):
    from freezestudio.core.errors import ModelFileError
    from freezestudio.core.files import limits

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", b"\0" * (limits.RATIO_CHECKED_ABOVE + 1))
    with zipfile.ZipFile(bomb) as archive, pytest.raises(ModelFileError, match="zip bomb"):
        limits.check_archive(archive, bomb)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FREEZESTUDIO_HOSTILE_FULL"),
                    reason="minutes long: set FREEZESTUDIO_HOSTILE_FULL=1 to run it")
def test_larger_seeded_corpus(tmp_path):
    """Three more seeds, every mutation at every strength, 20 files through the CLI."""
    cases = {}
    for seed in range(3):
        global SEED
        SEED, saved = SEED + seed + 1, SEED
        try:
            folder = tmp_path / f"seed{seed}"
            folder.mkdir()
            cases.update({f"{seed}_{k}": v
                          for k, v in build_corpus(folder, thorough=True).items()})
        finally:
            SEED = saved
    outcomes = run_in_process([path for path, _ in cases.values()], tmp_path)
    counts, problems = _check(cases, outcomes)
    print(f"\nhostile corpus (slow), in-process: {len(cases)} files: {dict(counts)}")
    assert not problems, "\n".join(problems)
    _cli_check(cases, _cli_sample(cases, SLOW_CLI_SAMPLE))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker(sys.argv[2])
