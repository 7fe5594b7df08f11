"""Build file sources from a catalog CSV (``filename,label[,label_name]``) or a class-per-folder tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from galaxymorph.data.classes import VOTES_ONLY
from galaxymorph.data.imageio import is_image_path
from galaxymorph.data.listing import resolve_listed
from galaxymorph.data.sources import FileSource
from galaxymorph.errors import DataError


def _has_votes(columns) -> bool:
    from galaxymorph.data.questions import find_vote_columns

    return bool(find_vote_columns(columns))


def catalog_source(csv_path: str | Path, spec: str) -> FileSource:
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DataError("catalog CSV not found", csv_path)
    try:
        df = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable CSV ({exc})", csv_path) from exc
    if "label" not in df.columns and "filename" in df.columns and _has_votes(df.columns):
        # A vote table (gz2_votes/votes.csv): no class labels, the decision tree's answers.
        df = df.assign(label=0, label_name=VOTES_ONLY)
    missing = [c for c in ("filename", "label") if c not in df.columns]
    if missing:
        raise DataError(f"catalog lacks column(s) {', '.join(missing)}; it has "
                        f"{', '.join(map(str, df.columns)) or 'none'}; expected filename,label[,label_name]",
                        csv_path)
    if df["label"].isna().any():
        rows = (df.index[df["label"].isna()] + 2).tolist()[:5]
        raise DataError(f"empty label on line(s) {rows}", csv_path)
    labels = _integer_labels(df["label"], csv_path)
    if (labels < 0).any():
        rows = (np.flatnonzero(labels < 0) + 2).tolist()[:5]
        raise DataError(f"negative labels in column 'label' (line(s) {rows})", csv_path)
    names = df["filename"]
    blank = names.isna() | (names.astype(str).str.strip() == "")
    if blank.any():
        rows = (df.index[blank] + 2).tolist()[:5]
        raise DataError(f"empty filename on line(s) {rows}", csv_path)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    class_names = [f"class_{i}" for i in range(n_classes)]
    if "label_name" in df.columns:
        for lab, name in df.groupby("label")["label_name"].first().items():
            class_names[int(lab)] = str(name)
        clash = df.groupby("label")["label_name"].nunique()
        if (clash > 1).any():
            bad = clash[clash > 1].index.tolist()
            raise DataError(f"label(s) {bad} carry more than one label_name", csv_path)
    root = csv_path.parent
    paths = [resolve_listed(root, str(f)) for f in df["filename"]]
    extra = df.drop(columns=[c for c in ("filename", "label", "label_name") if c in df.columns])
    return FileSource(paths, labels, class_names, spec, root,
                      metadata=extra.reset_index(drop=True) if len(extra.columns) else None)


def _integer_labels(column: pd.Series, csv_path: Path) -> np.ndarray:
    """Labels as int64; a float like 1.5 or a word is an error naming its line, not truncated."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != np.round(values))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"column 'label' must hold integers (class indices); line {first + 2} has "
                        f"'{column.iloc[first]}'", csv_path)
    return values.to_numpy().astype(np.int64)


def folder_source(root: str | Path, spec: str) -> FileSource:
    root = Path(root)
    if not root.is_dir():
        raise DataError("folder not found", root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError("no class subfolders (expected one subfolder of images per class)", root)
    paths, labels = [], []
    for label, d in enumerate(class_dirs):
        files = sorted(p for p in d.rglob("*") if p.is_file() and is_image_path(p))
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DataError("no image files under the class subfolders", root)
    return FileSource(paths, np.asarray(labels), [d.name for d in class_dirs], spec, root)
