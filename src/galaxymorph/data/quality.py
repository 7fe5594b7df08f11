"""Images of a catalog to look at before training or measuring on it.

Survey cutout services sometimes answer with something else: GZ1 holds an SDSS error page
("getFrames() has failed", white text on black; ``587729387686002878.jpeg``) labelled as a
galaxy, and any large download has files that are truncated, blank or centred on nothing.
Such an image teaches a classifier noise. It also counts as a false alarm against a
real-vs-synthetic detector that rightly calls it not a galaxy (docs/detector.md). Each image is
read once and checked for:

* ``unreadable``: the reader's message (a truncated or non-image file, a constant image);
* ``blank``: nearly one flat value, std below 1 count in 8-bit;
* ``no central source``: the automatic framing finds no source at the centre
  (:func:`galaxymorph.data.framing.petrosian_radius` is None): sky only, an error page, a
  cutout centred off its target, or a galaxy beside a star bright enough to lift the sky
  estimate (GZ1 has one of these too). Framing then falls back to the fixed crop.

Nothing is removed: the report lists the images and a catalog can leave them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.data.dataset import GalaxyDataset
from galaxymorph.errors import ImageReadError

#: Problems the check reports, in the order they are tested.
PROBLEMS = ("unreadable", "blank", "no central source")
#: Std (8-bit counts) below which an image is one flat value.
BLANK_STD = 1.0


@dataclass
class QualityReport:
    spec: str
    n: int
    #: one row per flagged image: ``id``, ``location``, ``label``, ``problem``, ``detail``
    flagged: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {p: sum(r["problem"] == p for r in self.flagged) for p in PROBLEMS}

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "n": self.n, "counts": self.counts(), "flagged": self.flagged}

    def write_csv(self, path: str | Path) -> Path:
        """The flagged images as CSV (written atomically), ``id`` first so a catalog can drop them."""
        import csv

        from galaxymorph.io_utils import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", "location", "label", "problem", "detail"])
            w.writeheader()
            w.writerows(self.flagged)
        return path


def image_problem(image: np.ndarray) -> tuple[str, str] | None:
    """``(problem, detail)`` of one decoded (H, W, 3) uint8 image, or None if it looks like a
    galaxy cutout."""
    from galaxymorph.data.framing import petrosian_radius

    std = float(np.asarray(image, dtype=np.float32).std())
    if std < BLANK_STD:
        return "blank", f"pixel std {std:.2f}"
    if petrosian_radius(image) is None:
        return "no central source", "the automatic framing finds no source at the centre"
    return None


def check_images(dataset: GalaxyDataset,
                 progress: Callable[[int, int], None] | None = None) -> QualityReport:
    """Read every image of ``dataset`` once and list those that are not galaxy cutouts.
    ``progress(done, total)`` is called every 200 images."""
    report = QualityReport(dataset.spec, len(dataset))
    ids = dataset.ids
    for i in range(len(dataset)):
        row = {"id": ids[i], "location": dataset.location(i),
               "label": dataset.class_names[int(dataset.labels[i])]}
        try:
            found = image_problem(dataset.read(i))
        except ImageReadError as exc:
            found = ("unreadable", str(exc))
        if found is not None:
            report.flagged.append({**row, "problem": found[0], "detail": found[1]})
        if progress is not None and (i + 1) % 200 == 0:
            progress(i + 1, len(dataset))
    return report
