"""FreezeStudio's Qt user interface: a thin adapter over `freezestudio.core`.

Nothing here imports TensorFlow at module level; the GUI starts without it and imports it
on a background thread (see `background.threads`). The rooms: docs/architecture.md,
Architecture.
"""
