"""Qt-free core, in layers (lowest first; docs/architecture.md, Architecture):

- `graph`: Keras functional-graph mechanics, gradient-flow analysis, the StopGradient layer;
- `model`: the edit document, its tree, change notifications, summaries, signatures;
- `edits` (plans, stop-gradient points) and `data` (training data);
- `files`: opening and saving model files;
- `training` and `export`;
- `diagnostics`: the log file of unexpected failures, versions and devices (Help > About).

Nothing in this package may import Qt, pyqtgraph or `freezestudio.gui`.
"""
