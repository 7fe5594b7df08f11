"""Where galmorph keeps downloaded data and caches."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The galmorph cache folder: ``$GALMORPH_HOME`` or ``~/.galmorph``."""
    root = os.environ.get("GALMORPH_HOME")
    return Path(root).expanduser() if root else Path.home() / ".galmorph"


def data_dir() -> Path:
    return home() / "data"


def cache_dir() -> Path:
    return home() / "cache"
