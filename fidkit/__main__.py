"""``python -m fidkit``: the command line; exits with `fidkit.cli.main`'s code."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
