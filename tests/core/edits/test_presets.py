"""Fine-tuning presets on real keras.applications models (weights=None, 32x32): blocks
found from the layer names, the plans they write, and the CLI's --preset."""

import json

import keras
import model_builders as mb
import pytest

from freezestudio.cli import main
from freezestudio.core.edits.fine_tuning import resolve_multipliers
from freezestudio.core.edits.plans import apply_plan
from freezestudio.core.edits.presets import discriminative, find_blocks, gradual, preset_plan
from freezestudio.core.errors import PlanError
from freezestudio.core.files.loading import open_document


def _open(model, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return open_document(path)


def test_gradual_on_a_nested_mobilenet_v2(tmp_path):
    document = _open(mb.mobilenet_v2_transfer(), tmp_path)
    blocks = find_blocks(document)
    backbone = document.root.children[1].path  # the nested MobileNetV2
    assert [b.glob for b in blocks[:2]] == [f"{backbone}/expanded_conv_*",
                                            f"{backbone}/block_1_*"]
    assert blocks[-1].glob == f"{backbone}/block_16_*" and len(blocks) == 17
    plan = gradual(document, blocks=2, from_epoch=4, factor=0.1)
    apply_plan(document, plan)
    trains = {n.path for n in document.root.walk() if document.trainable_state(n) is True}
    assert "dense_1" in trains and not any(p.startswith(backbone + "/") for p in trains)
    stage = document.fine_tuning.schedule[0]
    assert stage.from_epoch == 4 and stage.batchnorm == "frozen"
    unfrozen = [m for m, _ in stage.trainable]
    assert unfrozen[:2] == [f"{backbone}/block_15_*", f"{backbone}/block_16_*"]
    assert f"{backbone}/Conv_1" in unfrozen  # between the last block and the head
    assert all(v == 0.1 for _, v in stage.lr_multipliers)


def test_discriminative_on_resnet50_grows_geometrically(tmp_path):
    document = _open(mb.keras_application("ResNet50")(), tmp_path)
    blocks = find_blocks(document)
    assert blocks[0].glob == "conv2_block1_*" and blocks[-1].glob == "conv5_block3_*"
    assert len(blocks) == 16
    apply_plan(document, discriminative(document, lowest=0.01))
    values = resolve_multipliers(document, document.fine_tuning.lr_multipliers)
    assert values["conv1_conv:kernel"] == pytest.approx(0.01)  # the stem: the first block's
    assert values["conv2_block1_1_conv:kernel"] == pytest.approx(0.01)
    assert values["conv3_block1_1_conv:kernel"] == pytest.approx(0.01 ** (13 / 16))
    assert values["conv5_block3_3_conv:kernel"] == pytest.approx(0.01 ** (1 / 16))
    assert values["predictions:kernel"] == 1.0
    ordered = [values[f"conv{s}_block1_1_conv:kernel"] for s in (2, 3, 4, 5)]
    assert ordered == sorted(ordered)


def test_keras_hub_transformer_layers_are_blocks(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=3, num_heads=1,
                                             hidden_dim=4, intermediate_dim=8,
                                             max_sequence_length=6)
    inputs = {name: keras.Input((6,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    pooled = backbone(inputs)["pooled_output"]
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled), name="bert_cls")
    document = _open(model, tmp_path)
    globs = [b.glob for b in find_blocks(document)]
    assert [g.rsplit("/", 1)[-1] for g in globs] == [f"transformer_layer_{k}" for k in range(3)]


def test_no_blocks_asks_for_globs_and_globs_work(tmp_path):
    document = _open(mb.mlp(), tmp_path)
    with pytest.raises(PlanError, match="found no blocks.*globs=GLOB"):
        gradual(document)
    plan = preset_plan(document, "gradual:globs=dense;dense_1,blocks=1,from_epoch=3,lr=0.5")
    assert [r.to_dict() for r in plan.trainable] == [
        {"match": "*", "value": False}, {"match": "dense_2", "value": True}]
    assert plan.schedule[0].trainable == (("dense_1", True),)
    with pytest.raises(PlanError, match="unknown option 'speed'"):
        preset_plan(document, "gradual:speed=2")
    with pytest.raises(PlanError, match="unknown preset 'slow'"):
        preset_plan(document, "slow")


def test_cli_preset_trains_and_writes_its_plan(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "m.keras"
    mb.bn_block_model().save(path)
    plan_path, out = tmp_path / "preset.json", tmp_path / "out.keras"
    assert main(["apply", str(path), "-o", str(out), "--preset",
                 "gradual:blocks=1,from_epoch=2,lr=0.1", "--write-plan", str(plan_path)]) == 0
    plan = json.loads(plan_path.read_text())
    assert plan["schedule"][0]["trainable"] == [{"match": "block_2_*", "value": True}]
    assert plan["schedule"][0]["lr_multipliers"] == [{"match": "block_2_*", "value": 0.1}]
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(16, 4)), y=rng.normal(size=(16, 2)))
    assert main(["train", str(path), "--data", str(tmp_path / "d.npz"), "--plan",
                 str(plan_path), "-o", str(tmp_path / "t.keras"), "--epochs", "2",
                 "--validation-split", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stages"][1]["unfrozen"] == ["block_2_dense"]
    assert summary["stages"][1]["batchnorm_kept_frozen"] == ["block_2_bn"]
    assert summary["integrity"]["ok"]
    assert main(["apply", str(path), "-o", str(out), "--preset", "gradual:blocks=5"]) == 2
    assert "blocks must be 1 to 2" in capsys.readouterr().err
