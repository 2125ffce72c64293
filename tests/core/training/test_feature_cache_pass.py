"""The feature-caching pass: one trace of the prefix for every batch size and split, and
a head trained on cached features ends with the weights the full model's steps give."""

import model_builders as mb
import numpy as np

from freezestudio.core.data import Split, TrainingData, load_data
from freezestudio.core.edits.plans import matching_nodes
from freezestudio.core.files.loading import open_document
from freezestudio.core.model.signature import model_io
from freezestudio.core.training.config import COMPLETED, TrainingConfig
from freezestudio.core.training.trainer import Trainer
from freezestudio.resources import DEMO_DIR


def weights(document):
    return {w.id: w.variable.numpy().copy() for w in document.weights}


def test_partial_batches_and_validation_reuse_one_trace_and_match_the_full_model(tmp_path):
    path = tmp_path / "counted.keras"
    mb.counted_deep_head().save(path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 6)).astype("float32")
    y = rng.integers(0, 3, 130)
    # 100 training samples at batch 64: a partial last batch; 30 validation samples
    data = TrainingData("arrays", Split([x[:100]], [y[:100]]), Split([x[100:]], [y[100:]]))
    trained, traces = {}, {}
    for mode in ("on", "off"):
        document = open_document(path)
        document.set_trainable(matching_nodes(document, "deep"), False)
        counter = document.model.get_layer("count")
        before = counter.calls
        result = Trainer(document, data, TrainingConfig(
            epochs=3, batch_size=64, optimizer="sgd", seed=0, cache_features=mode)).run()
        assert result.status == COMPLETED, result.message
        assert result.info.feature_cache.startswith("caching the outputs of deep") == \
            (mode == "on")
        traces[mode] = counter.calls - before
        trained[mode] = weights(document)
        assert len(result.history) == 3 and result.history[-1].val_loss is not None
    assert traces["on"] == 1  # train (64 + 36) and validation (30): the same trace
    for key, value in trained["off"].items():
        np.testing.assert_allclose(trained["on"][key], value, rtol=1e-5, atol=1e-6)


def test_an_image_folder_is_cached_through_its_pipeline_with_a_partial_batch(tmp_path):
    mb.write_image_folder(tmp_path, 3)
    trained = {}
    for mode in ("on", "off"):
        document = open_document(DEMO_DIR / "cnn_transfer.keras")
        data = load_data(tmp_path, model_io(document), validation_split=0)
        result = Trainer(document, data, TrainingConfig(
            epochs=2, batch_size=4, shuffle=False, seed=0, cache_features=mode)).run()
        assert result.status == COMPLETED, result.message
        assert result.info.feature_cache.startswith("caching") == (mode == "on")
        trained[mode] = weights(document)
    for key, value in trained["off"].items():
        np.testing.assert_allclose(trained["on"][key], value, rtol=1e-4, atol=1e-6)
