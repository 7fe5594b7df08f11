"""The same image reached twice: by another spelling of its path, a link, or a byte-identical copy.

A catalog listing ``images/../images/X.jpeg`` beside ``X.jpeg`` holds one galaxy twice; if the
two land in different folds, the test fold scores an image the network trained on. Splits keep
such aliases together (see :func:`alias_groups`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from galaxymorph.io_utils import file_sha256


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (None when it cannot be read)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def alias_groups(paths: Sequence[str | Path]) -> list[str]:
    """A group key per path: equal for paths that resolve to the same file, and for files of
    identical content. Cheap: one ``realpath`` and ``stat`` each; only files whose size another
    file shares are hashed."""
    real = [os.path.realpath(p) for p in paths]
    by_size: dict[int, list[str]] = defaultdict(list)
    for r in dict.fromkeys(real):  # each distinct file once
        try:
            by_size[os.stat(r).st_size].append(r)
        except OSError:
            continue  # missing files are reported by the decoder, not here
    key = {r: r for r in real}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        first_of: dict[str, str] = {}
        for r in same_size:
            d = file_digest(r)
            if d is not None:
                key[r] = first_of.setdefault(d, r)
    return [key[r] for r in real]


def files_among(paths: Sequence[str | Path], among: Sequence[str | Path]) -> np.ndarray:
    """Which of ``paths`` are files of ``among``: the same file under another spelling or a
    link, or a file of identical content (as :func:`alias_groups` keys them)."""
    if not len(paths) or not len(among):
        return np.zeros(len(paths), dtype=bool)
    keys = alias_groups([*among, *paths])
    wanted = set(keys[:len(among)])
    return np.array([k in wanted for k in keys[len(among):]], dtype=bool)


def merge_groups(*keyings: Sequence[str]) -> list[str]:
    """One group per item such that items sharing a key in any keying share a group (union-find)."""
    n = len(keyings[0])
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in keyings:
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            j = first.setdefault(k, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
    return [f"g{find(i)}" for i in range(n)]
