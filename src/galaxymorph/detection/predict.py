"""Score image files with a trained detector (``galaxymorph detector predict``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from galaxymorph.detection.detector import SCORE_COLUMNS, Detector
from galaxymorph.errors import ImageReadError


def predict_detector(run_dir: str | Path, images: Sequence[str | Path], *,
                     crop: float | None = None, device: str = "cpu",
                     batch_size: int = 64) -> list[dict[str, Any]]:
    """The detector's verdict per image file (folders are expanded to their image files):
    ``synthetic_score``, ``verdict``, ``flagged_by`` and the parts (``p_network``,
    ``p_statistics``, ``atypicality``; :data:`~.detector.SCORE_COLUMNS`).

    A file that cannot be read gives those keys as None and ``error`` (a message) instead of
    stopping the others. Inputs are framed like the detector's real training images
    (``real_crop`` of ``detector.json``, as ``predict --detector`` and the app do); ``crop``
    overrides that framing.
    """
    from dataclasses import replace

    import torch

    from galaxymorph.data.imageio import is_image_path, read_image

    det = Detector.load(run_dir, device=device)
    if crop is not None:
        det.view = replace(det.view, crop=float(crop))
    paths: list[Path] = []
    for item in images:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f))
            paths += files or [p]  # an empty folder is reported, not silently skipped
        else:
            paths.append(p)
    results: list[dict[str, Any]] = []
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if pending:
            scores = det.scores(torch.stack([t for _, t in pending]))
            for i, (k, _) in enumerate(pending):
                results[k].update({c: _plain(scores[c][i]) for c in SCORE_COLUMNS})
            pending.clear()

    for path in paths:
        results.append({"path": str(path), **dict.fromkeys(SCORE_COLUMNS), "error": None})
        try:
            if path.is_dir():
                raise ImageReadError("folder holds no image files", path)
            pending.append((len(results) - 1, det.view(read_image(path))))
        except ImageReadError as exc:
            results[-1]["error"] = str(exc)
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value; NaN (a part the detector lacks) as None."""
    if isinstance(value, str):
        return str(value)
    value = float(value)
    return None if value != value else value
