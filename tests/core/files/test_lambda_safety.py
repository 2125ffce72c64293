"""Lambda layers never run before the user trusts the file, on every load path."""

import model_builders as mb
import pytest

from freezestudio.core.errors import UntrustedCodeError, UserError
from freezestudio.core.files.loading import open_document

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    return mb.make_lambda_models(tmp_path_factory.mktemp("lambda"))


@pytest.mark.parametrize("fmt", mb.LAMBDA_FORMATS)
def test_lambda_refused_without_trust_and_runs_only_with_trust(lambda_models, fmt):
    path, sentinel = lambda_models[fmt]
    sentinel.unlink(missing_ok=True)
    with pytest.raises(UntrustedCodeError) as info:
        open_document(path)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "Lambda" in message and "--trust" in message and "\n" not in message
    assert not sentinel.exists(), "the Lambda's code ran although the file was not trusted"

    # Trusted, the model opens and the code does run: the sentinel can detect it.
    document = open_document(path, trust=True)
    assert sentinel.exists()
    sentinel.unlink()
    assert any(p.endswith("code") for p in document.layer_paths)
    assert document.layer(next(p for p in document.layer_paths
                               if p.endswith("code"))).class_name == "Lambda"
