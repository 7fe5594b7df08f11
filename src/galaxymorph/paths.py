"""Where galaxymorph keeps downloaded data and caches, and its environment variables."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

PREFIX = "GALAXYMORPH_"
OLD_PREFIX = "GALMORPH_"  # the package's name before 0.2; read for one release, with a warning


def env(name: str, default: str | None = None) -> str | None:
    """``$GALAXYMORPH_<name>``, else the deprecated ``$GALMORPH_<name>`` (with a warning)."""
    value = os.environ.get(PREFIX + name)
    if value is not None:
        return value
    old = os.environ.get(OLD_PREFIX + name)
    if old is not None:
        warnings.warn(f"${OLD_PREFIX}{name} is deprecated and will be ignored in the next release; "
                      f"set ${PREFIX}{name} instead", FutureWarning, stacklevel=2)
        return old
    return default


def home() -> Path:
    """The galaxymorph cache folder: ``$GALAXYMORPH_HOME`` or ``~/.galaxymorph``."""
    root = env("HOME")
    return Path(root).expanduser() if root else Path.home() / ".galaxymorph"


def data_dir() -> Path:
    return home() / "data"


def cache_dir() -> Path:
    return home() / "cache"
