"""File names listed in a catalog or a ``.txt`` list, resolved to paths (no pandas: predict's
start-up over plain image lists imports this)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def resolve_listed(root: Path, name: str) -> Path:
    """Resolve relative to the CSV's folder, then its ``images/`` subfolder."""
    p = Path(name)
    if p.is_absolute():
        return p
    direct = root / p
    if direct.exists():
        return direct
    under_images = root / "images" / p
    return under_images if under_images.exists() else direct


def listed_paths(list_file: Path) -> Iterator[str]:
    """The image paths a ``.txt`` list names, one per line (blank lines and ``#`` comments
    skipped), resolved like a catalog's file names: against the list's folder, then its
    ``images/`` subfolder. Read line by line: a survey's list may hold millions."""
    with open(list_file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            name = line.strip()
            if name and not name.startswith("#"):
                yield str(resolve_listed(list_file.parent, name))
