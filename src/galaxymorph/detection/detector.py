"""One loaded real-vs-synthetic detector: a classifier plus the input chain it was trained with.

Every command that asks "is this image synthetic?" (``detector predict``, ``detector
evaluate``, ``predict --detector``, the app) goes through :class:`Detector`, so one image gets
one p(synthetic) whichever asks. ``detector.json`` (written by ``detector train``) is read here
and nowhere else; a two-class classifier without it (classes ``real``/``synthetic``) is used
with its own preprocessing.

Inference (``galaxymorph.predict``) never imports this module: it takes a loaded detector as
an argument (anything with ``view`` and ``p_synthetic``), so detection -> inference stays
one-way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxymorph.detection.assembly import Resampling
from galaxymorph.detection.scoring import NEVER_FLAGS, synthetic_column, verdict
from galaxymorph.detection.statistics import KNOWN_WIDTHS, STATISTICS_FILE, noise_statistics
from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE, StatisticsHead, p_either
from galaxymorph.detection.typicality import TYPICALITY_FILE, Typicality
from galaxymorph.errors import DataError, ImageReadError
from galaxymorph.io_utils import read_json_object
from galaxymorph.models.views import VIEWS

DETECTOR_FILE = "detector.json"


def read_detector_info(run_dir: str | Path) -> dict[str, Any]:
    """``detector.json`` of a detector run, checked field by field; ``{}`` when there is none."""
    path = Path(run_dir) / DETECTOR_FILE
    info = read_json_object(path)
    res = info.get("resampling") or {}
    if not isinstance(res, dict):
        raise DataError("'resampling' must be an object", path)
    _check_int(res.get("image_size"), "resampling.image_size", path, low=8)
    _check_int(res.get("common_size"), "resampling.common_size", path, low=8)
    for key in ("real_crop", "fake_crop"):
        crop = info.get(key)
        if crop is not None and not (_is_number(crop) and 0 < float(crop) <= 1):
            raise DataError(f"'{key}' must be a number in (0, 1], got {crop!r}", path)
    view = info.get("view")
    if view is not None and view not in VIEWS:
        raise DataError(f"'view' must be one of {', '.join(VIEWS)}, got {view!r}", path)
    head = info.get("statistics_head")
    if head is not None and head != STATISTICS_HEAD_FILE:
        raise DataError(f"'statistics_head' must be {STATISTICS_HEAD_FILE!r} or null, got {head!r}", path)
    for key in ("threshold", "atypicality_threshold"):
        value = info.get(key)
        if value is not None and not (_is_number(value) and 0 <= float(value) <= NEVER_FLAGS):
            raise DataError(f"'{key}' must be a number in [0, 1] (or {NEVER_FLAGS!r}: flags "
                            f"nothing), got {value!r}", path)
    return info


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(value: Any, name: str, path: Path, low: int) -> None:
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                  and value >= low):
        raise DataError(f"'{name}' must be an integer >= {low}, got {value!r}", path)


@dataclass
class Detector:
    """A real-vs-synthetic classifier and the chain every input goes through before it."""

    classifier: Any  # galaxymorph.models.loading.Classifier
    view: Resampling  # decoded (H, W, 3) uint8 -> (3, S, S) uint8, picklable for workers
    threshold: float = 0.5  # p(synthetic) at or above it reads "synthetic"
    info: dict[str, Any] = field(default_factory=dict)  # detector.json, as read
    typicality: Typicality | None = None  # the fake-free score, when the run has one
    #: Atypicality at or above it also reads "synthetic" (None: p(synthetic) alone decides).
    atypicality_threshold: float | None = None
    #: The second fake-free reference, in the images' noise statistics (``statistics``).
    by_statistics: Typicality | None = None
    #: The supervised head on the noise statistics (:mod:`.statistics_head`), when fitted:
    #: p(synthetic) is then the larger of the network's and the head's.
    head: StatisticsHead | None = None

    @classmethod
    def load(cls, ref: str | Path, device: str = "cpu", engine: str = "auto") -> Detector:
        """A detector run folder (or any classifier with a class named 'synthetic');
        ``engine``: the inference engine its forward passes run on (``auto``, ``torch``, ``onnx``)."""
        from galaxymorph.models.loading import load_classifier

        clf = load_classifier(ref, device=device, engine=engine)
        synthetic_column(clf)
        info = read_detector_info(ref) if Path(ref).is_dir() else {}
        built = clf.card.model_kwargs.get("view", "pixels")
        if info.get("view", built) != built:  # the network applies its card's view
            raise DataError(f"detector.json says view {info['view']!r} but the model card "
                            f"builds {built!r}: the files come from different runs", ref)
        res = info.get("resampling") or {}
        # Inputs are survey images, so they are framed like the *real* training images.
        crop = info.get("real_crop") or clf.preprocessing.crop
        view = Resampling(int(res.get("image_size") or clf.card.image_size),
                          res.get("common_size"), float(crop))
        typ = Path(ref) / TYPICALITY_FILE if Path(ref).is_dir() else None
        typicality = Typicality.load(typ) if typ is not None and typ.is_file() else None
        stats = Path(ref) / STATISTICS_FILE if Path(ref).is_dir() else None
        by_statistics = (Typicality.load(stats) if typicality is not None and stats is not None
                         and stats.is_file() else None)
        if by_statistics is not None and by_statistics.reference.shape[1] not in KNOWN_WIDTHS:
            raise DataError(f"typicality statistics have {by_statistics.reference.shape[1]} "
                            f"columns; known sets have {KNOWN_WIDTHS}", stats)
        a_thr = info.get("atypicality_threshold") if typicality is not None else None
        # Only the file detector.json names: a head left by an earlier calibration is not used.
        head = (StatisticsHead.load(Path(ref) / STATISTICS_HEAD_FILE)
                if info.get("statistics_head") else None)
        return cls(clf, view, float(info.get("threshold", 0.5)), info, typicality,
                   None if a_thr is None else float(a_thr), by_statistics, head)

    @property
    def source(self) -> str:
        return str(self.classifier.source)

    @property
    def image_size(self) -> int:
        return self.view.image_size

    @property
    def input_view(self) -> str:
        """What the network sees of each input: pixels, frequency or both (``models.views``)."""
        return str(self.classifier.card.model_kwargs.get("view", "pixels"))

    def p_network(self, batch: torch.Tensor) -> np.ndarray:
        """The network's calibrated p(synthetic) of a batch already through :attr:`view`
        (N, 3, S, S) uint8."""
        with torch.inference_mode():
            probs = self.classifier.predict_proba(batch, tta=False)
        return probs[:, synthetic_column(self.classifier)].astype(np.float64)

    def p_synthetic(self, batch: torch.Tensor, stats: np.ndarray | None = None) -> np.ndarray:
        """p(synthetic) of a batch already through :attr:`view`: the network's, or, with a
        statistics head, synthetic by the network or by the head (``stats``: the batch's
        :func:`noise_statistics`, when already computed)."""
        p = self.p_network(batch)
        if self.head is None:
            return p
        return p_either(p, self.head.p(_columns(batch, stats, self.head.width)))

    def _statistics(self, batch: torch.Tensor) -> np.ndarray | None:
        """The batch's noise statistics, once for the head and the reference (None: neither)."""
        widths = [self.head.width] if self.head is not None else []
        if self.by_statistics is not None:
            widths.append(self.by_statistics.reference.shape[1])
        return noise_statistics(batch, max(widths)) if widths else None

    def features(self, batch: torch.Tensor) -> np.ndarray:
        """Penultimate-layer features (N, D) of a batch already through :attr:`view` (always
        the PyTorch network: the exported graph has only the logits)."""
        from galaxymorph.data.transforms import to_float
        from galaxymorph.models.introspect import features

        clf = self.classifier
        with torch.inference_mode():
            return features(clf.net, to_float(batch.to(clf.device))).float().cpu().numpy()

    def atypicality(self, batch: torch.Tensor, stats: np.ndarray | None = None) -> np.ndarray:
        """How untypical of real galaxies (0..1, no fakes involved): the percentile of the
        distance to the real training images among real calibration images, in the network's
        features and (runs since the noise statistics) in the images' noise statistics, the
        larger of the two, or the statistics' alone (``--atypicality statistics``); NaN
        without a reference. ``stats``: the batch's noise statistics, when already computed."""
        if self.typicality is None:
            return np.full(len(batch), np.nan)
        if self.by_statistics is None:
            return self.typicality.atypicality(self.features(batch))
        width = self.by_statistics.reference.shape[1]  # 5 for detectors fitted before 16
        a = self.by_statistics.atypicality(_columns(batch, stats, width))
        if self.info.get("settings", {}).get("atypicality") == "statistics":
            return a
        return np.fmax(self.typicality.atypicality(self.features(batch)), a)

    def synthetic_score(self, p: np.ndarray, atypicality: np.ndarray) -> np.ndarray:
        """One score to rank images by under the "either" verdict: the larger of p(synthetic)'s
        percentile among the real calibration images and the atypicality (itself a percentile
        of the same images), so 0.999 means "less typical of real galaxies, by one rule or the
        other, than 99.9% of them". p(synthetic) itself when the detector decides on p alone."""
        p = np.asarray(p, dtype=np.float64)
        q = self.typicality.p_percentile(p) if self.typicality is not None else None
        if q is None or self.atypicality_threshold is None:
            return p
        return np.fmax(q, np.asarray(atypicality, dtype=np.float64))  # a NaN atypicality: q

    def scores(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """``p_synthetic`` and ``atypicality`` of a batch already through :attr:`view` (the
        columns ``galaxymorph predict --detector`` writes)."""
        stats = self._statistics(batch)
        return {"p_synthetic": self.p_synthetic(batch, stats),
                "atypicality": self.atypicality(batch, stats)}

    def score_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """p(synthetic) of decoded images (each framed and resampled by :attr:`view`)."""
        if not len(images):
            return np.zeros(0)
        return self.p_synthetic(torch.stack([self.view(im) for im in images]))

    def prepared_batches(self, paths: Sequence[str | Path], batch_size: int = 128):
        """``(indices, batch)`` of image files already at the input size (an assembled
        catalog, whose images went through the chain when written); unreadable ones skipped."""
        from galaxymorph.data.imageio import read_image

        plain = Resampling(self.image_size)
        for start in range(0, len(paths), batch_size):
            tensors, where = [], []
            for j in range(start, min(start + batch_size, len(paths))):
                try:
                    tensors.append(plain(read_image(paths[j])))
                    where.append(j)
                except ImageReadError:
                    continue
            if tensors:
                yield where, torch.stack(tensors)

    def score_prepared_files(self, paths: Sequence[str | Path],
                             batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """p(synthetic) and atypicality of assembled image files; unreadable ones give NaN."""
        p = np.full(len(paths), np.nan)
        a = np.full(len(paths), np.nan)
        for where, batch in self.prepared_batches(paths, batch_size):
            scores = self.scores(batch)
            p[where], a[where] = scores["p_synthetic"], scores["atypicality"]
        return p, a

    def label(self, p: float, atypicality: float | None = None) -> str:
        """The verdict: p(synthetic) at or above :attr:`threshold`, or an atypicality at or
        above :attr:`atypicality_threshold` (the rule ``detector train`` fitted on real images)."""
        flagged = verdict(np.array([p]), self.threshold,
                          None if atypicality is None else np.array([atypicality]),
                          self.atypicality_threshold)
        return "synthetic" if flagged[0] else "real"

    def to(self, device: str | torch.device) -> Detector:
        self.classifier.to(device)
        return self

    def use_engine(self, kind: str) -> Detector:
        """Run p(synthetic) on engine ``kind`` from the next batch on (``predict --engine``)."""
        self.classifier.use_engine(kind)
        return self


def _columns(batch: torch.Tensor, stats: np.ndarray | None, width: int) -> np.ndarray:
    """The first ``width`` noise statistics of ``batch``: from ``stats`` when it already holds
    them (the first five columns are the same in every set), else computed."""
    if stats is None or stats.shape[1] < width:
        stats = noise_statistics(batch, width)
    return stats[:, :width]


def load_detector(ref: str | Path, device: str = "cpu", engine: str = "auto") -> Detector:
    """:meth:`Detector.load`."""
    return Detector.load(ref, device, engine)
