"""Where fidkit keeps files on this machine: the one cache root every room (weights, spill files, reference
statistics) puts its folder under."""

from __future__ import annotations

import os
from pathlib import Path


def fidkit_home() -> Path:
    """Returns fidkit's cache root: ``$FIDKIT_HOME``, else the platform user cache dir (platformdirs)."""
    env = os.environ.get("FIDKIT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fidkit"))
