"""The commands with `lora` plans: apply (kept or --merge-lora), inspect, train."""

import json

import keras
import model_builders as mb
import numpy as np
import pytest

from freezestudio.cli import main

PLAN = {"freezestudio_plan": 1,
        "lora": [{"match": "mha:query/kernel", "rank": 2, "alpha": 4},
                 {"match": "mha:value/kernel", "rank": 2}, {"match": "dense", "rank": 1}]}
DENSE_PLAN = {"freezestudio_plan": 1, "lora": [{"match": "dense", "rank": 1}]}


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora_cli")
    mb.attention_model().save(folder / "attention.keras")
    (folder / "plan.json").write_text(json.dumps(PLAN))
    (folder / "dense_plan.json").write_text(json.dumps(DENSE_PLAN))
    return folder


def walk(node):
    yield node
    for child in node["children"]:
        yield from walk(child)


def test_apply_keeps_adapters_and_inspect_shows_them_with_keras_counts(files, capsys):
    out = files / "adapted.keras"
    code, stdout, err = run_cli(["apply", files / "attention.keras", "--plan",
                                 files / "plan.json", "-o", out], capsys)
    assert code == 0, err
    assert "not applied" not in err
    code, stdout, err = run_cli(["inspect", out, "--json"], capsys)
    assert code == 0, err
    tree = json.loads(stdout)
    weights = {w["id"]: w for node in walk(tree["model"]) for w in node["weights"]}
    assert weights["mha:query/kernel"]["lora"] == {"rank": 2, "alpha": 4}
    assert weights["mha:value/kernel"]["lora"] == {"rank": 2, "alpha": 2}
    assert not weights["mha:query/kernel"]["trainable"]
    assert weights["mha:query/lora_kernel_a"]["trainable"]
    code, stdout, err = run_cli(["inspect", out], capsys)
    assert "LoRA query/kernel rank 2, value/kernel rank 2" in stdout
    assert "LoRA adapters: 3, trainable share" in stdout


def test_inspect_counts_equal_keras_for_the_saved_result(files, capsys):
    out = files / "dense_adapted.keras"  # a Dense adapter: Keras's config holds it
    code, _, err = run_cli(["apply", files / "attention.keras", "--plan",
                            files / "dense_plan.json", "-o", out], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["inspect", out, "--json"], capsys)
    totals = json.loads(stdout)["totals"]
    plain = keras.saving.load_model(out, compile=False)
    assert totals["trainable_params"] == mb.size(plain.trainable_weights)
    assert totals["params"] == mb.size(plain.weights)


def test_apply_merge_lora_writes_a_plain_model_with_the_same_outputs(files, capsys):
    merged, kept = files / "merged.keras", files / "kept.keras"
    for out, extra in ((merged, ["--merge-lora"]), (kept, [])):
        code, _, err = run_cli(["apply", files / "attention.keras", "--plan",
                                files / "plan.json", "-o", out, *extra], capsys)
        assert code == 0, err
    plain, adapted = (keras.saving.load_model(p, compile=False) for p in (merged, kept))
    assert not any("lora" in v.path for v in plain.weights)
    assert any("lora" in v.path for v in adapted.weights)
    x = mb.sample_input(plain)
    np.testing.assert_allclose(plain(x).numpy(), adapted(x).numpy(), atol=1e-6)


def test_export_merge_lora_is_the_same_option_and_writes_a_plain_model(files, capsys):
    import argparse

    from freezestudio.cli import _command_modules, build_parser

    parser = build_parser(_command_modules())
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = {name: [a for a in command._actions if "--merge-lora" in a.option_strings]
               for name, command in commands.choices.items()}
    assert sorted(name for name, found in options.items() if found) == ["apply", "export",
                                                                        "train"]
    assert len({(o.help, o.default, o.const) for [o] in filter(None, options.values())}) == 1
    out = files / "exported_merged.keras"
    code, _, err = run_cli(["export", files / "attention.keras", "--plan", files / "plan.json",
                            "--format", "keras", "-o", out, "--merge-lora"], capsys)
    assert code == 0, err
    assert not any("lora" in v.path for v in keras.saving.load_model(out).weights)


def test_train_with_a_lora_plan_moves_only_adapters_and_reports_them(files, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 8)).astype("float32")
    np.savez(files / "seq.npz", x=x, y=(x[:, 0, 0] > 0).astype("int32"))
    plan = {**PLAN, "trainable": [{"match": "*", "value": False}]}
    (files / "frozen_plan.json").write_text(json.dumps(plan))
    out = files / "trained.keras"
    code, stdout, err = run_cli(["train", files / "attention.keras", "--data",
                                 files / "seq.npz", "--plan", files / "frozen_plan.json",
                                 "-o", out, "--epochs", "2", "--batch-size", "8",
                                 "--validation-split", "0", "--json"], capsys)
    assert code == 0, err
    integrity = json.loads(stdout.strip().splitlines()[-1])["integrity"]
    assert integrity["ok"]
    assert sorted(integrity["changed"]) == sorted(
        [f"mha:{p}/lora_kernel_{m}" for p in ("query", "value") for m in "ab"]
        + ["dense:lora_kernel_a", "dense:lora_kernel_b"])
    assert [a["id"] for a in integrity["adapters"] if a["moved"]] == [
        "mha:query/kernel", "mha:value/kernel", "dense:kernel"]
