"""The README's examples run as written on the bundled demos."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli_runner import assert_user_error, run_cli

from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.resources import DEMO_DIR

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_plan_applies_to_the_demo_cnn():
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", README.read_text(), re.S)
                if "freezestudio_plan" in b]
    document = open_document(DEMO_DIR / "cnn_transfer.keras")
    apply_plan(document, Plan.from_dict(json.loads(block)))
    assert document.trainable_state(document.layer("conv_base")) == "partial"
    assert document.trainable_state(document.layer("conv_base/block3_conv")) is True
    assert not document.is_weight_trainable(document.weight("head_out:bias"))
    assert document.stop_points == ["conv_base/block2_pool"]


def test_an_out_of_range_training_option_is_named(tmp_path):
    for option in ("--epochs", "--batch-size"):
        run = run_cli("train", DEMO_DIR / "cnn_transfer.keras", "--data", "demo", "-o",
                      tmp_path / "out.keras", option, "0")
        assert_user_error(run, f"{option}: must be at least 1, got 0")
