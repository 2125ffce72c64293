"""Frozen graph: one `.pb` GraphDef with every variable folded into a constant.

`convert_variables_to_constants_v2` runs on the deployment model's serving function, so
the graph needs no checkpoint. Beside it, `<name>.io.txt` names its input and output
tensors (what `tf.import_graph_def` + `Session.run` need), one per line:

    input<TAB>tokens<TAB>tokens:0<TAB>int32<TAB>[None, 40]
    output<TAB>classifier<TAB>Identity:0<TAB>float32<TAB>[None, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from freezestudio.core.errors import UserError
from freezestudio.core.export.inference_model import InferenceModel

HEADER = ("# FreezeStudio frozen graph: tensors of the GraphDef in the .pb beside this file.\n"
          "# Load: graph_def = tf.compat.v1.GraphDef.FromString(data); "
          "tf.import_graph_def(graph_def, name='')\n"
          "# kind\tname\ttensor\tdtype\tshape\n")


@dataclass(frozen=True)
class GraphTensor:
    kind: str  # "input" or "output"
    name: str  # the model's input/output name
    tensor: str  # the tensor's name in the graph, e.g. "Identity:0"
    dtype: str
    shape: str


def companion_path(path: Path) -> Path:
    """The text file naming the tensors of the graph at `path`."""
    return path.with_name(f"{path.stem}.io.txt")


def write_frozen_graph(inference: InferenceModel, path: Path, options=None) -> list[str]:
    """Writes the GraphDef to `path` and its tensor list to `companion_path(path)`."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = inference.function().get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    unfolded = frozen.inputs[len(inference.inputs):]
    if unfolded:  # resources it cannot fold into constants stay inputs, e.g. lookup tables
        raise UserError(f"a frozen graph cannot hold {len(unfolded)} resource(s) of this model "
                        f"that are not variables (e.g. the lookup table of a TextVectorization "
                        f"or StringLookup layer): export as savedmodel instead")
    graph_def = frozen.graph.as_graph_def()
    order = tf.nest.flatten({name: name for name in inference.output_names})
    out_tensor = dict(zip(order, frozen.outputs, strict=True))
    rows = [GraphTensor("input", info.name, tensor.name, info.dtype, str(list(info.shape)))
            for info, tensor in zip(inference.inputs, frozen.inputs, strict=True)]
    rows += [GraphTensor("output", info.name, out_tensor[info.name].name, info.dtype,
                         str(list(info.shape))) for info in inference.outputs]
    path.write_bytes(graph_def.SerializeToString())
    companion_path(path).write_text(
        HEADER + "".join(f"{r.kind}\t{r.name}\t{r.tensor}\t{r.dtype}\t{r.shape}\n" for r in rows))
    return []


def read_tensors(path: Path) -> list[GraphTensor]:
    """The rows of a companion file (see the module docstring)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(GraphTensor(*line.split("\t")))
    return rows


def load_graph_def(path: Path):
    import tensorflow as tf

    return tf.compat.v1.GraphDef.FromString(Path(path).read_bytes())


def run_frozen_graph(path: Path, inference: InferenceModel, feeds: dict) -> list:
    """Imports the GraphDef into a fresh graph and runs it in a v1 Session on `feeds`."""
    import numpy as np
    import tensorflow as tf

    rows = read_tensors(companion_path(path))
    inputs = {r.name: r.tensor for r in rows if r.kind == "input"}
    outputs = {r.name: r.tensor for r in rows if r.kind == "output"}
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(load_graph_def(path), name="")
    with tf.compat.v1.Session(graph=graph) as session:
        results = session.run([outputs[name] for name in inference.output_names],
                              {inputs[t.name]: np.asarray(feeds[t.name], dtype=t.dtype)
                               for t in inference.inputs})
    return [np.asarray(r) for r in results]
