"""Score image files with a trained detector (``galaxymorph detector predict``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from galaxymorph.detection.detector import Detector
from galaxymorph.errors import ImageReadError


def predict_detector(run_dir: str | Path, images: Sequence[str | Path], *,
                     crop: float | None = None, device: str = "cpu",
                     batch_size: int = 64) -> list[dict[str, Any]]:
    """p(synthetic) per image file (folders are expanded to their image files).

    A file that cannot be read gives ``{"path", "p_synthetic": None, "error": message}``
    instead of stopping the others. Inputs are framed like the detector's real training
    images (``real_crop`` of ``detector.json``, as ``predict --detector`` and the app do);
    ``crop`` overrides that framing.
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
            batch = torch.stack([t for _, t in pending])
            scores = det.scores(batch)
            for (k, _), q, a in zip(pending, scores["p_synthetic"], scores["atypicality"],
                                    strict=True):
                a = None if a != a else float(a)
                results[k].update(p_synthetic=float(q), label=det.label(float(q), a), atypicality=a)
            pending.clear()

    for path in paths:
        results.append({"path": str(path), "p_synthetic": None, "label": None,
                        "atypicality": None, "error": None})
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
