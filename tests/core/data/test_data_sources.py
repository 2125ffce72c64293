"""Data sources, validation split, the fit check and the loss choice."""

import keras
import model_builders as mb
import numpy as np
import pytest
import tensorflow as tf

from freezestudio.core.data import load_data, resolve_demo
from freezestudio.core.data.fit import DENSE, SPARSE, check_fits, label_kind
from freezestudio.core.errors import UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.model.signature import IOSpec, model_io
from freezestudio.core.training.losses import choose_losses
from freezestudio.resources import DEMO_DIR


@pytest.fixture(scope="module")
def cnn():
    return open_document(DEMO_DIR / "cnn_transfer.keras")


@pytest.fixture(scope="module")
def text():
    return open_document(DEMO_DIR / "text_classifier.keras")


def save_and_open(model, folder, name="m"):
    path = folder / f"{name}.keras"
    model.save(path)
    return open_document(path)


# --- sources ------------------------------------------------------------------------------
def test_demo_npz_with_explicit_validation(cnn):
    data = load_data("demo", model_io(cnn), model_path=cnn.source_path)
    assert len(data.train) == 1500 and len(data.validation) == 300
    assert data.validation_origin == "explicit"
    assert resolve_demo("demo:text").name == "text_task_b.npz"
    with pytest.raises(UserError, match="no bundled demo data 'demo:nope'"):
        resolve_demo("demo:nope")
    check_fits(cnn, data)


def test_validation_split_zero_and_fraction(cnn):
    io = model_io(cnn)
    none = load_data("demo:cnn", io, validation_split=0)
    assert none.validation is None and none.validation_origin == "none"
    split = load_data("demo:cnn", io, validation_split=0.2, seed=4)
    assert len(split.train) == 1200 and len(split.validation) == 300
    assert split.validation_origin == "split 0.2" and split.notes
    again = load_data("demo:cnn", io, validation_split=0.2, seed=4)
    assert np.array_equal(split.validation.y[0], again.validation.y[0])  # seeded
    with pytest.raises(UserError, match="validation split"):
        load_data("demo:cnn", io, validation_split=1.0)


def test_per_input_name_arrays_for_a_two_input_model(tmp_path):
    document = save_and_open(mb.two_in_two_out(), tmp_path)
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(20, 3)), "b": rng.normal(size=(20, 2)),
              "cls": rng.integers(0, 4, 20), "reg": rng.normal(size=(20, 1)),
              "a_val": rng.normal(size=(5, 3)), "b_val": rng.normal(size=(5, 2)),
              "cls_val": rng.integers(0, 4, 5), "reg_val": rng.normal(size=(5,))}
    np.savez(tmp_path / "d.npz", **arrays)
    data = load_data(tmp_path / "d.npz", model_io(document))
    assert [a.shape for a in data.train.x] == [(20, 3), (20, 2)]
    assert len(data.validation) == 5
    check_fits(document, data)
    del arrays["b"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=r"missing array 'b'.*one array per model input.*"
                                        r"found a, a_val, b_val"):
        load_data(tmp_path / "bad.npz", model_io(document))


def test_csv_with_target_column(tmp_path):
    inputs = keras.Input((3,), name="x")
    document = save_and_open(keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs)),
                             tmp_path)
    (tmp_path / "d.csv").write_text("f1,price,f2,f3\n1,10.5,2,3\n4,20.25,5,6\n7,30,8,9\n")
    data = load_data(tmp_path / "d.csv", model_io(document), target="price")
    assert data.train.x[0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert data.train.y[0].tolist() == [10.5, 20.25, 30.0]
    check_fits(document, data)
    with pytest.raises(UserError, match="no column 'cost'; columns: f1, price, f2, f3"):
        load_data(tmp_path / "d.csv", model_io(document), target="cost")
    (tmp_path / "bad.csv").write_text("a,b,c,d\n1,2,x,4\n")
    with pytest.raises(UserError, match="line 2, column 'c': 'x' is not a number"):
        load_data(tmp_path / "bad.csv", model_io(document))
    (tmp_path / "headless.csv").write_text("1,10.5,2,3\n4,20.25,5,6\n")  # first sample lost
    with pytest.raises(UserError, match=r"the first row \(1, 10.5, 2, 3\) is numbers, but it "
                                        "is read as the column names: add a header row"):
        load_data(tmp_path / "headless.csv", model_io(document))


def test_image_folder_is_resized_to_the_model_input(tmp_path, cnn):
    rng = np.random.default_rng(0)
    for label in ("circle", "square", "triangle"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            png = tf.io.encode_png(pixels).numpy()
            (tmp_path / "imgs" / label / f"{i}.png").write_bytes(png)
    data = load_data(tmp_path / "imgs", model_io(cnn))
    assert data.class_names == ["circle", "square", "triangle"]
    check_fits(cnn, data)
    (x,), (y,) = next(iter(data.dataset(data.train, 4)))
    assert x.shape == (4, 32, 32, 3) and float(tf.reduce_max(x)) <= 1.0
    assert y.numpy().tolist() == [0, 0, 0, 1]
    (tmp_path / "imgs" / "star").mkdir()
    (tmp_path / "imgs" / "star" / "0.png").write_bytes(png)
    with pytest.raises(UserError, match="image folder has 4 classes .* 'head_out' has 3 units"):
        check_fits(cnn, load_data(tmp_path / "imgs", model_io(cnn)))


def test_dataset_prefetches_and_reshuffles_with_a_seed(cnn):
    data = load_data("demo:cnn", model_io(cnn))
    ds = data.dataset(data.train, 50, shuffle=True, seed=1)
    assert "Prefetch" in type(ds).__name__
    first = [y.numpy().tolist() for _, (y,) in ds.take(1)]
    second = [y.numpy().tolist() for _, (y,) in ds.take(1)]
    assert first != second  # a new order every epoch


# --- refusing data that do not fit -------------------------------------------------------
def test_wrong_input_shape_is_refused(cnn, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 28, 28, 3), "float32"), y=np.zeros(8, "int32"))
    data = load_data(tmp_path / "d.npz", model_io(cnn))
    with pytest.raises(UserError) as info:
        check_fits(cnn, data)
    assert str(info.value) == ("input 'image' expects samples of shape (32, 32, 3) (model "
                               "input (None, 32, 32, 3)); the training data have (28, 28, 3) "
                               "(array (8, 28, 28, 3))")


def test_too_many_classes_are_refused(cnn, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 32, 32, 3), "float32"),
             y=np.array([0, 1, 2, 3, 4, 0, 1, 2]))
    with pytest.raises(UserError, match=r"output 'head_out' has 3 units \(classes 0..2\) but "
                                        r"the training labels range from 0 to 4 \(5 classes\)"):
        check_fits(cnn, load_data(tmp_path / "d.npz", model_io(cnn)))


def test_missing_key_and_mismatched_counts_are_refused(cnn, tmp_path):
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((8, 32, 32, 3), "float32"))
    with pytest.raises(UserError, match=r"missing array 'y': expected y \(or 'head_out', the "
                                        r"model's output name\); found x"):
        load_data(tmp_path / "nolabels.npz", model_io(cnn))
    np.savez(tmp_path / "counts.npz", x=np.zeros((8, 32, 32, 3), "float32"),
             y=np.zeros(7, "int32"))
    with pytest.raises(UserError, match="disagree on the number of samples"):
        check_fits(cnn, load_data(tmp_path / "counts.npz", model_io(cnn)))
    np.savez(tmp_path / "onehot.npz", x=np.zeros((8, 32, 32, 3), "float32"),
             y=np.zeros((8, 5), "float32"))
    with pytest.raises(UserError, match=r"labels must have shape \(3,\) per sample or class "
                                        r"indices"):
        check_fits(cnn, load_data(tmp_path / "onehot.npz", model_io(cnn)))


def test_float_tokens_for_an_integer_input_are_refused(text, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((4, 40), 0.5), y=np.zeros(4, "int32"))
    with pytest.raises(UserError, match="input 'tokens' expects int32 values"):
        check_fits(text, load_data(tmp_path / "d.npz", model_io(text)))


# --- loss choice --------------------------------------------------------------------------
def spec(units, activation):
    return IOSpec("out", (None, units), "float32", activation)


@pytest.mark.parametrize(("units", "activation", "labels", "expected", "logits"), [
    (3, "softmax", np.array([0, 2, 1]), "sparse_categorical_crossentropy", False),
    (3, "softmax", np.eye(3), "categorical_crossentropy", False),
    (3, "linear", np.array([0, 2, 1]), "sparse_categorical_crossentropy", True),
    (1, "sigmoid", np.array([0, 1, 1]), "binary_crossentropy", False),
    (1, "linear", np.array([0, 1, 1]), "binary_crossentropy", True),
    (1, "linear", np.array([0.3, 1.5, -2.0]), "mean_squared_error", False),
    (2, "linear", np.array([[0.3, 1.5], [1.0, 2.0]]), "mean_squared_error", False),
])
def test_loss_is_guessed_from_activation_shape_and_labels(units, activation, labels,
                                                          expected, logits):
    kind = label_kind(spec(units, activation), labels)
    (choice,) = choose_losses([spec(units, activation)], [kind], [labels], None, None)
    assert (choice.name, choice.from_logits) == (expected, logits)
    assert choice.reason


def test_saved_compile_config_wins_and_adapts_to_one_hot_labels(cnn):
    out = model_io(cnn).outputs[0]
    assert out.activation == "softmax"
    sparse = np.array([0, 1, 2])
    (choice,) = choose_losses([out], [SPARSE], [sparse], cnn.compile_config, None)
    assert choice.describe() == ("sparse_categorical_crossentropy: the model's saved "
                                 "compile config")
    (choice,) = choose_losses([out], [DENSE], [np.eye(3)], cnn.compile_config, None)
    assert choice.name == "categorical_crossentropy" and "adjusted" in choice.reason


def test_user_loss_must_fit_the_labels(cnn):
    out = model_io(cnn).outputs[0]
    with pytest.raises(UserError, match="loss mean_squared_error needs labels shaped like"):
        choose_losses([out], [SPARSE], [np.array([0, 1])], None, "mse")
    with pytest.raises(UserError, match="unknown loss 'bogus'"):
        choose_losses([out], [SPARSE], [np.array([0, 1])], None, "bogus")
    (choice,) = choose_losses([out], [DENSE], [np.eye(3)], None, "mse")
    assert choice.describe() == "mean_squared_error: chosen by the user"


def test_summary_previews_counts_shapes_and_classes(text):
    data = load_data("demo", model_io(text), model_path=text.source_path, validation_split=0.25,
                     seed=0)
    summary = data.summary()
    assert summary["train_samples"] == 900 and summary["validation_samples"] == 300
    assert summary["validation"] == "split 0.25"
    assert summary["inputs"] == [{"shape": [40], "dtype": "int32"}]
    assert summary["labels"][0]["classes"] == 3
