"""Size, agreement and accuracy of every quantisation mode, and the quantizer comparison.

Run: `python scripts/quantization_table.py [--skip-mobilenet]`. Prints Markdown tables:

1. The demo CNN (`cnn_transfer.keras`, its head first trained for 3 epochs on the demo's
   task-B training rows), exported through FreezeStudio's pipeline in every mode, verified
   on the demo's 300 validation rows (int8 calibrated on 300 training rows).
2. The same float TFLite file quantised by `litert-quantizer` (if installed) with its
   dynamic and static int8 recipes, run with LiteRT on the same rows: the evidence for
   quantising with the TFLite converter (docs/architecture.md, Known traps, Export).
3. MobileNetV2 (224x224, random weights): sizes; agreement on random inputs only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = [("tflite", None, "float32"), ("tflite", "dynamic", "float32"),
         ("tflite", "float16", "float32"), ("tflite", "int8", "float32"),
         ("tflite", "int8", "int8"), ("onnx", None, "float32"), ("onnx", "dynamic", "float32")]


def export_rows(document, folder: Path, verification, calibration) -> list[str]:
    from freezestudio.core.export import ExportOptions, export_document

    rows = []
    for fmt, mode, io_type in MODES:
        out = folder / f"{document.model.name}_{mode}_{io_type}.{fmt}"
        options = ExportOptions(quantize=mode, io_type=io_type, verification=verification,
                                calibration=calibration if mode == "int8" else None,
                                min_agreement=0.0 if mode else None)
        report = export_document(document, fmt, out, options)
        s = report.to_json()
        ratio = f"{s['bytes'] / s['float_bytes']:.3f}" if s["float_bytes"] else "1"
        label = f"{fmt} {mode or 'float32'}" + (" (int8 I/O)" if io_type == "int8" else "")
        rows.append(f"| {label} | {s['bytes']:,} | {ratio} | {s['top1_agreement']:.4f} | "
                    f"{_text(s['accuracy'])} | {_text(s['model_accuracy'])} | "
                    f"{s['max_abs_diff']:.4f} | {report.seconds:.1f} |")
    return rows


def quantizer_rows(document, float_tflite: Path, x_train, x_val, y_val,
                   expected) -> list[str]:
    try:
        from litert_quantizer import quantizer, recipe
    except ImportError:
        return ["| (litert-quantizer not installed) | | | | | | | |"]
    from ai_edge_litert.interpreter import Interpreter

    from freezestudio.core.export.inference_model import deployment_model
    from freezestudio.core.export.tflite import run_tflite

    inference = deployment_model(document)

    buffer = float_tflite.read_bytes()
    runner = Interpreter(model_content=buffer).get_signature_runner("serving_default")
    name = next(iter(runner.get_input_details()))
    rows = []
    for label, chosen in (("dynamic_wi8_afp32", recipe.dynamic_wi8_afp32()),
                          ("static_wi8_ai8", recipe.static_wi8_ai8())):
        qt = quantizer.Quantizer(bytearray(buffer), chosen)
        calibration = None
        if qt.need_calibration:
            calibration = qt.calibrate({"serving_default": [
                {name: x_train[i:i + 1]} for i in range(300)]})
        model = qt.quantize(calibration, enable_progress_report=False).quantized_model
        path = float_tflite.with_name(f"quantizer_{label}.tflite")
        path.write_bytes(bytes(model))  # int8 I/O (static): run_tflite (de)quantises
        got = run_tflite(path, inference, {inference.input_names[0]: x_val})[0]
        agreement = np.mean(np.argmax(got, 1) == np.argmax(expected, 1))
        accuracy = np.mean(np.argmax(got, 1) == y_val)
        rows.append(f"| litert-quantizer {label} | {len(model):,} | "
                    f"{len(model) / len(buffer):.3f} | {agreement:.4f} | {accuracy:.4f} | | "
                    f"{np.max(np.abs(got - expected)):.4f} | |")
    return rows


def _text(value) -> str:
    return "" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-mobilenet", action="store_true")
    args = parser.parse_args()
    from freezestudio.core.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from freezestudio.core.export.samples import Samples
    from freezestudio.core.files.loading import open_document
    from freezestudio.resources import demo_file

    header = ["| export | bytes | x float | top-1 agreement | accuracy | model accuracy | "
              "max abs diff | seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    data = np.load(demo_file("cnn_task_b.npz"))
    keras.utils.set_random_seed(0)
    model = keras.saving.load_model(demo_file("cnn_transfer.keras"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data["x"], data["y"], epochs=3, batch_size=32, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder / "demo_cnn.keras")
        document = open_document(folder / "demo_cnn.keras")
        verification = Samples([data["x_val"]], [data["y_val"]], "demo validation rows")
        calibration = Samples([data["x"][:300]], [data["y"][:300]], "demo training rows")
        print("## Demo CNN (head trained 3 epochs), 300 validation rows\n")
        print("\n".join(header + export_rows(document, folder, verification, calibration)))
        expected = document.model.predict(data["x_val"], verbose=0)
        print("\n## The same float TFLite file through litert-quantizer\n")
        print("\n".join(header + quantizer_rows(
            document, next(folder.glob("*_None_float32.tflite")), data["x"], data["x_val"],
            data["y_val"], expected)))
        if args.skip_mobilenet:
            return
        mobilenet = keras.applications.MobileNetV2(weights=None)
        mobilenet.save(folder / "mobilenet_v2.keras")
        document = open_document(folder / "mobilenet_v2.keras")
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (64, 224, 224, 3)).astype("float32")
        print("\n## MobileNetV2 224x224, random weights (agreement on random inputs: "
              "size is the point)\n")
        print("\n".join(header + export_rows(document, folder, Samples([x[32:]], None, "random"),
                                             Samples([x[:32]], None, "random"))))


if __name__ == "__main__":
    main()
