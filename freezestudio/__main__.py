"""`python -m freezestudio` is the same as the `freezestudio` command."""

from freezestudio.cli import main

raise SystemExit(main())
