"""Lambda safety through the command line, on every load path."""

import model_builders as mb
import pytest
from cli_runner import assert_user_error, run_many

# Every format is also checked in-process (tests/core/test_core_lambda_safety.py); here each
# run costs a TensorFlow import, so the nested .keras variant and some trusted runs are left
# to the in-process test.
UNTRUSTED = ("keras", "keras3_h5", "tf_keras_savedmodel", "tf_keras_h5")
TRUSTED = ("keras3_h5", "tf_keras_savedmodel")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    return mb.make_lambda_models(tmp_path_factory.mktemp("cli_lambda"))


@pytest.fixture(scope="module")
def untrusted(lambda_models):
    for _, sentinel in lambda_models.values():
        sentinel.unlink(missing_ok=True)
    runs = run_many([["inspect", lambda_models[fmt][0]] for fmt in UNTRUSTED])
    ran = {fmt: lambda_models[fmt][1].exists() for fmt in UNTRUSTED}
    return dict(zip(UNTRUSTED, runs, strict=True)), ran


@pytest.mark.parametrize("fmt", UNTRUSTED)
def test_untrusted_lambda_refused(untrusted, fmt):
    runs, ran = untrusted
    assert_user_error(runs[fmt], "Lambda", "--trust")
    assert not ran[fmt], "the Lambda's code ran although --trust was not given"


def test_trusted_lambda_opens_and_runs(untrusted, lambda_models):
    for fmt in TRUSTED:
        lambda_models[fmt][1].unlink(missing_ok=True)
    runs = run_many([["inspect", lambda_models[fmt][0], "--trust"] for fmt in TRUSTED])
    for fmt, run in zip(TRUSTED, runs, strict=True):
        assert run.returncode == 0, (fmt, run.stderr[-2000:])
        assert "Lambda" in run.stdout
        assert lambda_models[fmt][1].exists(), f"{fmt}: trusted load did not run the Lambda"
        lambda_models[fmt][1].unlink()
