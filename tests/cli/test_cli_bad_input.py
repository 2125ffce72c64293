"""Bad input through the real command line: exit 2, one error line last, no traceback."""

import json
import os
import shutil

import model_builders as mb
import pytest
from cli_runner import assert_user_error, run_cli, run_many

CASE_WORDS = {
    "missing": "no such file",
    "empty": "empty",
    "random_bytes": "not a model file",
    "random_bytes_h5": "not a model file",
    "truncated_keras": "truncated",
    "truncated_h5": "truncated",
    "h5_named_keras": "rename",
    "dir_without_saved_model": "saved_model.pb",
    "weights_only_h5": "weights only",
}
# zip_without_config, nonsense_config and corrupt_saved_model_pb are covered in-process
# (tests/core/test_core_bad_input.py): each CLI run that gets past the header check costs a
# TensorFlow import.


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every bad case and the custom-class cases, run once (two processes at a time)."""
    folder = tmp_path_factory.mktemp("cli_bad")
    cases = mb.make_bad_inputs(folder)
    keras_path, h5_path, module = mb.make_missing_class_model(folder)
    mb.forget_gizmo()
    jobs = {case: ["inspect", cases[case]] for case in CASE_WORDS}
    jobs["gizmo_h5"] = ["inspect", h5_path]
    jobs["gizmo_h5_json_with_module"] = ["inspect", h5_path, "--json", "--custom-objects", module]
    jobs["apply_with_module"] = ["apply", keras_path, "--custom-objects", module,
                                 "--freeze", "giz", "-o", folder / "gizmo_frozen.keras"]
    jobs["module_missing"] = ["inspect", folder / "good.keras", "--custom-objects",
                              folder / "nowhere.py"]
    results = dict(zip(jobs, run_many(list(jobs.values())), strict=True))
    return cases, results, folder


@pytest.mark.parametrize("case", list(CASE_WORDS))
def test_bad_file_exit_2_one_line(runs, case):
    cases, results, _ = runs
    assert_user_error(results[case], cases[case].name, CASE_WORDS[case])


def test_missing_custom_class_is_named(runs):
    _, results, _ = runs
    assert_user_error(results["gizmo_h5"], "'Gizmo'", "--custom-objects")


def test_custom_objects_module_makes_it_load(runs):
    _, results, folder = runs
    loaded = results["gizmo_h5_json_with_module"]
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    data = json.loads(loaded.stdout)
    assert data["totals"]["params"] == 6
    assert [c["class"] for c in data["model"]["children"]][-1] == "Gizmo"
    applied = results["apply_with_module"]
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert "0 of 6 params trainable" in applied.stdout
    assert (folder / "gizmo_frozen.keras").is_file()


def test_unknown_option_and_missing_argument_are_user_errors(tmp_path):
    for args in (["inspect"], ["inspect", tmp_path / "x.keras", "--no-such-option"],
                 ["apply", tmp_path / "x.keras"]):
        assert_user_error(run_cli(*args))


def test_custom_objects_module_that_does_not_exist(runs):
    _, results, _ = runs
    assert_user_error(results["module_missing"], "nowhere.py")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied(runs, tmp_path):
    _, _, folder = runs
    locked = tmp_path / "locked.keras"
    shutil.copy(folder / "good.keras", locked)
    locked.chmod(0)
    try:
        assert_user_error(run_cli("inspect", locked), "permission denied")
    finally:
        locked.chmod(0o600)


def test_help_exits_0():
    done = run_cli("--help")
    assert done.returncode == 0
    assert "inspect" in done.stdout and "apply" in done.stdout
    assert done.stderr == ""
