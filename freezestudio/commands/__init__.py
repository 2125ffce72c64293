"""Headless sub-commands. Each module here is one `freezestudio <name>` command and defines

- `HELP`: one line for `freezestudio --help`;
- `configure(parser)`: adds its arguments (use `common.add_model_options` etc.);
- `run(args) -> int`: does the work; raises `UserError` for the user's mistakes.

Modules must not import TensorFlow at import time (`--help` and the GUI start stay fast).
"""
