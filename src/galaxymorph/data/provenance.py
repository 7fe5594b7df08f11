"""Where a generated data set came from: the ``sample_card.json`` that ``galaxymorph gan sample``
writes next to its ``labels.csv``.

Training (leakage warning) and detection (near-duplicate groups, the generator's crop) read it,
so it is read here, once, from the opened dataset: however its spec was spelt (``catalog:``,
a bare folder or CSV path), the card is found beside the images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from galaxymorph.data.dataset import GalaxyDataset

log = logging.getLogger("galaxymorph")

SAMPLE_CARD = "sample_card.json"


def sample_card_path(ds: GalaxyDataset) -> Path | None:
    """Where the card of ``ds`` would be (the folder of its catalog or class folders)."""
    root = getattr(ds.source, "root", None)
    return Path(root) / SAMPLE_CARD if root is not None else None


def read_sample_card(ds: GalaxyDataset) -> dict[str, Any] | None:
    """The sample card of ``ds`` with its fields checked, or ``None`` when there is none.

    A card that is unreadable or malformed is treated as absent (with a warning): it describes
    the data, it is not needed to use it.
    """
    path = sample_card_path(ds)
    if path is None or not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("%s: unreadable sample card ignored (%s)", path, exc)
        return None
    problem = _problem(card)
    if problem:
        log.warning("%s: malformed sample card ignored (%s)", path, problem)
        return None
    return card


def _problem(card: Any) -> str | None:
    if not isinstance(card, dict):
        return "not a JSON object"
    for key in ("generator", "source_data", "label_map"):
        if card.get(key) is not None and not isinstance(card[key], str):
            return f"{key} is not a string"
    seed = card.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return "seed is not an integer"
    crop = card.get("source_crop")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int | float)
                             or not 0 < crop <= 1):
        return "source_crop is not a number in (0, 1]"
    split = card.get("generator_split")
    if split is not None:
        if not isinstance(split, dict):
            return "generator_split is not an object"
        for key in ("fold", "file", "ids_sha256"):
            if split.get(key) is not None and not isinstance(split[key], str):
                return f"generator_split.{key} is not a string"
    return None
