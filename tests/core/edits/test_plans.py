"""Plans: applying docs/architecture.md-style rules, deriving a plan from an edit, plan errors."""

import json
import random
from fnmatch import fnmatchcase

import keras
import model_builders as mb
import pytest

from freezestudio.core.edits.plans import (
    Plan,
    apply_plan,
    derive_plan,
    load_plan,
    matching_nodes,
    save_plan,
)
from freezestudio.core.errors import PlanError, UserError
from freezestudio.core.files.loading import open_document
from freezestudio.core.model.document import PARTIAL


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans")
    paths = {}
    builders = {name: getattr(mb, name) for name in (
        "mlp", "sequential_with_backbone", "nested_sequential", "attention_model",
        "custom_layer_model", "shared_two_outputs")}
    builders["transfer"] = mb.mobilenet_v2_transfer
    for name, build in builders.items():
        paths[name] = folder / f"{name}.keras"
        build().save(paths[name])
    return paths


def state(document):
    """Everything a plan decides, plus what Keras itself trains."""
    return (
        {w: document.is_weight_trainable(document.weight(w)) for w in document.weight_ids},
        {p: document.trainable_state(document.layer(p)) for p in document.layer_paths
         if any(w.freezable for w in document.layer(p).all_weights())},
        mb.trainable_indices(document.model),
    )


def test_design_example_plan_on_nested_mobilenet(files, tmp_path):
    document = open_document(files["transfer"])
    base_name = next(p for p in document.layer_paths if p.startswith("mobilenetv2"))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({
        "freezestudio_plan": 1,
        "trainable": [
            {"match": base_name, "value": False},
            {"match": f"{base_name}/block_16_*", "value": True},
            {"match": "dense_1:bias", "value": False},
        ],
        "stop_gradient_after": [],
    }))
    apply_plan(document, load_plan(plan_file))

    # Oracle: the same edit made with Keras's own flags on an independent load.
    oracle = keras.saving.load_model(files["transfer"], compile=False)
    base = oracle.get_layer(base_name)
    for layer in base.layers:
        layer.trainable = fnmatchcase(layer.name, "block_16_*")
    oracle.get_layer("dense_1").bias.trainable = False
    assert mb.document_trainable_indices(document) == mb.trainable_indices(oracle)
    assert mb.trainable_indices(document.model) == mb.trainable_indices(oracle)

    assert document.trainable_state(document.layer(base_name)) == PARTIAL
    assert document.trainable_state(document.layer(f"{base_name}/block_16_project")) is True
    assert document.trainable_state(document.layer(f"{base_name}/block_15_project")) is False
    assert document.trainable_state(document.layer(f"{base_name}/Conv_1")) is False
    assert document.trainable_state(document.layer("dense_1")) == PARTIAL
    assert document.counts().trainable == mb.size(oracle.trainable_weights)


def test_later_rules_win(files):
    rules = [{"match": "*", "value": False}, {"match": "dense_1", "value": True}]
    forward = open_document(files["mlp"])
    apply_plan(forward, Plan.from_dict({"freezestudio_plan": 1, "trainable": rules}))
    layer = forward.model.get_layer("dense_1")
    assert {id(v) for v in forward.model.trainable_weights} == {id(layer.kernel), id(layer.bias)}

    backward = open_document(files["mlp"])
    apply_plan(backward, Plan.from_dict({"freezestudio_plan": 1, "trainable": rules[::-1]}))
    assert backward.model.trainable_weights == []
    assert backward.trainable_state(backward.root) is False


def test_container_rule_applies_inside_and_weight_glob(files):
    document = open_document(files["sequential_with_backbone"])
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, "trainable": [
        {"match": "backbone", "value": False},
        {"match": "*:bias", "value": False},
    ]}))
    for weight in document.weights:
        trains = document.is_weight_trainable(weight)
        assert trains == (weight.id == "head:kernel"), weight.id
    assert all(not layer.trainable
               for layer in document.model.get_layer("backbone").layers)
    head = document.model.get_layer("head")
    assert [id(v) for v in document.model.trainable_weights] == [id(head.kernel)]


def test_glob_only_matches_whole_addresses(files):
    document = open_document(files["mlp"])
    apply_plan(document, Plan.from_dict(
        {"freezestudio_plan": 1, "trainable": [{"match": "dense", "value": False}]}))
    # "dense" is one layer, not a prefix of dense_1 / dense_2.
    assert document.trainable_state(document.layer("dense")) is False
    assert document.trainable_state(document.layer("dense_1")) is True
    assert document.trainable_state(document.layer("dense_2")) is True


def _random_edits(document, rng, count):
    layers = [p for p in document.layer_paths if p]
    containers = [p for p in layers if document.layer(p).is_container] or [""]
    for _ in range(count):
        kind = rng.choice(("weight", "layer", "container"))
        if kind == "weight":
            node = document.weight(rng.choice(document.weight_ids))
        elif kind == "layer":
            node = document.layer(rng.choice(layers))
        else:
            node = document.layer(rng.choice(containers))
        document.set_trainable([node], rng.random() < 0.5)


@pytest.mark.parametrize("name,trials", [
    ("sequential_with_backbone", 12), ("nested_sequential", 12), ("attention_model", 6),
    ("custom_layer_model", 6), ("shared_two_outputs", 6), ("transfer", 2)])
def test_derived_plan_reproduces_random_edits(files, tmp_path, name, trials):
    rng = random.Random(f"derive-{name}")
    for trial in range(trials):
        edited = open_document(files[name])
        _random_edits(edited, rng, rng.randint(1, 10))
        plan = derive_plan(edited)
        # Through a plan file, as the GUI and CLI would use it.
        plan_file = tmp_path / f"{name}-{trial}.json"
        save_plan(plan, plan_file)
        fresh = open_document(files[name])
        apply_plan(fresh, load_plan(plan_file))
        assert state(fresh) == state(edited), plan.to_dict()
        # From any starting state, not only a fresh one.
        other = open_document(files[name])
        _random_edits(other, rng, 5)
        apply_plan(other, plan)
        assert state(other) == state(edited), plan.to_dict()


def test_derived_plan_keeps_weightless_layer_flag(files):
    edited = open_document(files["sequential_with_backbone"])
    edited.set_trainable([edited.layer("drop")], False)
    assert edited.model.get_layer("drop").trainable is False
    fresh = open_document(files["sequential_with_backbone"])
    apply_plan(fresh, derive_plan(edited))
    assert fresh.trainable_state(fresh.layer("drop")) is False


def test_pattern_matching_nothing_names_pattern_and_close_path(files):
    document = open_document(files["sequential_with_backbone"])
    before = state(document)
    plan = Plan.from_dict({"freezestudio_plan": 1, "trainable": [
        {"match": "backbone", "value": False},
        {"match": "backbone/con", "value": True},
    ]})
    with pytest.raises(PlanError) as info:
        apply_plan(document, plan)
    message = str(info.value)
    assert "'backbone/con'" in message
    assert "backbone/conv" in message
    assert "\n" not in message
    assert state(document) == before  # nothing applied when one rule is bad


def test_stop_gradient_entry_matching_nothing_is_plan_error(files):
    document = open_document(files["mlp"])
    with pytest.raises(PlanError, match="no_such_layer"):
        apply_plan(document, Plan.from_dict(
            {"freezestudio_plan": 1, "stop_gradient_after": ["no_such_layer"]}))


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[]",
    '{"trainable": []}',
    '{"freezestudio_plan": 2, "trainable": []}',
    '{"freezestudio_plan": 1, "trainable": {"match": "*", "value": false}}',
    '{"freezestudio_plan": 1, "trainable": [{"match": "*", "value": "false"}]}',
    '{"freezestudio_plan": 1, "trainable": [{"match": "*", "value": 0}]}',
    '{"freezestudio_plan": 1, "trainable": [{"value": false}]}',
    '{"freezestudio_plan": 1, "trainable": [{"match": 3, "value": false}]}',
    '{"freezestudio_plan": 1, "stop_gradient_after": "dense"}',
    '{"freezestudio_plan": 1, "stop_gradient_after": [1]}',
    '{"freezestudio_plan": 1, "lr_multipliers": [{"match": "*", "value": true}]}',
    '{"freezestudio_plan": 1, "trainble": [{"match": "*", "value": false}]}',
    '{"freezestudio_plan": 1, "trainable": [{"match": "*", "value": false, "vaule": 1}]}',
    '{"freezestudio_plan": 1, "lr_multipliers": [{"match": "*", "value": 0}]}',
    '{"freezestudio_plan": 1, "lora": [{"match": "*", "rank": 0}]}',
    '{"freezestudio_plan": 1, "lora": [{"match": "*", "rnak": 4}]}',
    '{"freezestudio_plan": 1, "schedule": [{"from_epoch": 3}, {"from_epoch": 2}]}',
    '{"freezestudio_plan": 1, "schedule": [{"from_epoch": 2, "batchnorm": "melt"}]}',
    '{"freezestudio_plan": 1, "schedule": [{"epoch": 2}]}',
    '{"freezestudio_plan": 1, "schedule": 5}',
    '{"freezestudio_plan": "1"}',
])
def test_malformed_plan_is_plan_error(tmp_path, text):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_missing_plan_file_is_plan_error(tmp_path):
    with pytest.raises(PlanError, match="nothing.json"):
        load_plan(tmp_path / "nothing.json")


def test_fine_tuning_keys_round_trip(tmp_path):
    stage = {"from_epoch": 2, "trainable": [{"match": "dense_1", "value": True}],
             "lr_multipliers": [{"match": "dense_1", "value": 0.1}], "batchnorm": "train"}
    data = {"freezestudio_plan": 1, "trainable": [{"match": "*", "value": True}],
            "stop_gradient_after": [], "lr_multipliers": [{"match": "*", "value": 0.1}],
            "schedule": [stage], "lora": [{"match": "dense", "rank": 2}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    save_plan(load_plan(path), tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == data
    # a stage's omitted parts come back in full form
    short = dict(data, schedule=[{"from_epoch": 3}])
    assert Plan.from_dict(short).to_dict()["schedule"] == [
        {"from_epoch": 3, "trainable": [], "lr_multipliers": [], "batchnorm": "frozen"}]


@pytest.mark.parametrize("plan, named, suggested", [
    ({"freezestudio_plan": 1, "trainble": []}, "'trainble'", "'trainable'"),
    ({"freezestudio_plan": 1, "stop_gradient": []}, "'stop_gradient'", "'stop_gradient_after'"),
    ({"freezestudio_plan": 1, "trainable": [{"match": "*", "valeu": True}]}, "'valeu'",
     "'value'"),
    ({"freezestudio_plan": 1, "schedule": [{"from_epoch": 2, "trainabel": []}]}, "'trainabel'",
     "'trainable'"),
])
def test_an_unknown_key_is_named_with_the_closest_valid_one(plan, named, suggested):
    with pytest.raises(PlanError) as info:
        Plan.from_dict(plan)
    assert named in str(info.value) and f"did you mean {suggested}" in str(info.value)


def test_a_newer_plan_version_is_refused_with_both_versions():
    with pytest.raises(PlanError, match="version 2 is not one this FreezeStudio reads "
                                        r"\(it reads version 1\)"):
        Plan.from_dict({"freezestudio_plan": 2})


def test_every_reserved_key_is_said_not_applied_and_lora_is_applied():
    plan = Plan.from_dict({"freezestudio_plan": 1,
                           "lr_multipliers": [{"match": "*", "value": 0.1}],
                           "lora": [{"match": "head", "rank": 4, "alpha": 8}],
                           "schedule": [{"from_epoch": 2, "batchnorm": "train"}]})
    assert plan.to_dict()["lora"] == [{"match": "head", "rank": 4, "alpha": 8}]


def test_no_match_names_the_top_model_and_case_and_shared_prefix(files):
    document = open_document(files["sequential_with_backbone"])
    top = document.root.name
    with pytest.raises(PlanError, match=f"'{top}' is the top model itself, whose path is "
                                        "empty; addresses start below it, and '\\*' matches"):
        matching_nodes(document, top)
    with pytest.raises(PlanError, match="case-sensitive; with other case: backbone"):
        matching_nodes(document, "BACKBONE")
    with pytest.raises(PlanError) as info:  # far in edit distance, near by prefix
        matching_nodes(document, "backbone/zzzzzzzzzzzzzzzzzzzzzzzz*")
    assert "closest: backbone/" in str(info.value)


def test_fine_tuning_is_stored_with_the_model_and_replays(tmp_path, capsys):
    from freezestudio.cli import main
    from freezestudio.core.files.loading import open_document
    from freezestudio.core.model.fine_tuning import FineTuning, Stage

    source = tmp_path / "m.keras"
    mb.mlp().save(source)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "freezestudio_plan": 1, "trainable": [{"match": "dense", "value": False}],
        "lr_multipliers": [{"match": "dense_1", "value": 0.5}],
        "schedule": [{"from_epoch": 3, "trainable": [{"match": "dense", "value": True}],
                      "lr_multipliers": [{"match": "dense", "value": 0.1}]}]}))
    out = tmp_path / "out.keras"
    assert main(["apply", str(source), "--plan", str(plan), "-o", str(out)]) == 0
    expected = FineTuning((("dense_1", 0.5),), (Stage(3, (("dense", True),),
                                                      (("dense", 0.1),)),))
    reopened = open_document(out)
    assert reopened.fine_tuning == expected
    assert main(["inspect", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["lr_multiplier_by_weight"] == {"dense_1:kernel": 0.5, "dense_1:bias": 0.5}
    assert shown["schedule"][0]["from_epoch"] == 3
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "learning-rate multipliers: dense_1 x0.5 (x0.5: 2 weight(s), x1: 4 weight(s))" \
        in text
    assert "schedule: from epoch 3: unfreeze dense, LR x0.1 on dense, BatchNorm frozen" in text
    assert reopened.trainable_state(reopened.layer("dense")) is False
    # saving again (through the stored state alone) keeps it; h5 too
    again = tmp_path / "again.h5"
    assert main(["apply", str(out), "-o", str(again)]) == 0
    assert open_document(again).fine_tuning == expected
    # a plan's multiplier for a glob already present replaces it; its schedule replaces
    document = open_document(out)
    apply_plan(document, Plan.from_dict({"freezestudio_plan": 1, "lr_multipliers": [
        {"match": "dense_1", "value": 2}, {"match": "dense_2", "value": 3}]}))
    assert document.fine_tuning.lr_multipliers == (("dense_1", 2.0), ("dense_2", 3.0))
    assert document.fine_tuning.schedule == expected.schedule
