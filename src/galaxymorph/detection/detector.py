"""One loaded real-vs-synthetic detector: a classifier, the input chain it was trained with,
and the rule that turns its parts into one score and verdict.

Every command that asks "is this image synthetic?" (``detector predict``, ``detector
evaluate``, ``predict --detector``, the app) goes through :class:`Detector`, so one image gets
one ``synthetic_score``, one verdict and the same parts whichever asks. ``detector.json``
(written by ``detector train``) is read here and nowhere else; a two-class classifier without
it (classes ``real``/``synthetic``) is used with its own preprocessing and p(synthetic) >= 0.5.

Inference (``galaxymorph.predict``) never imports this module: it takes a loaded detector as
an argument (anything with ``view`` and ``scores``), so detection -> inference stays one-way.
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
from galaxymorph.detection.scoring import NEVER_FLAGS, synthetic_column
from galaxymorph.detection.statistics import KNOWN_WIDTHS, STATISTICS_FILE, noise_statistics
from galaxymorph.detection.statistics_head import STATISTICS_HEAD_FILE, StatisticsHead
from galaxymorph.detection.typicality import TYPICALITY_FILE, Typicality
from galaxymorph.detection.verdict import ThresholdRule, Verdict
from galaxymorph.errors import DataError, ImageReadError
from galaxymorph.inference.writers import DETECTOR_COLUMNS
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
    """A real-vs-synthetic classifier, the chain every input goes through before it, and the
    rule that turns its parts into one score and verdict."""

    classifier: Any  # galaxymorph.models.loading.Classifier
    view: Resampling  # decoded (H, W, 3) uint8 -> (3, S, S) uint8, picklable for workers
    #: The decision: the one calibrated :class:`~.verdict.Verdict` (detectors calibrated since
    #: it exists), or the thresholds of earlier ones (:class:`~.verdict.ThresholdRule`).
    rule: Verdict | ThresholdRule = field(default_factory=lambda: ThresholdRule(0.5))
    info: dict[str, Any] = field(default_factory=dict)  # detector.json, as read
    typicality: Typicality | None = None  # the fake-free score, when the run has one
    #: The second fake-free reference, in the images' noise statistics (``statistics``).
    by_statistics: Typicality | None = None
    #: The supervised head on the noise statistics (:mod:`.statistics_head`), when fitted.
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
        # Only the file detector.json names: a head left by an earlier calibration is not used.
        head = (StatisticsHead.load(Path(ref) / STATISTICS_HEAD_FILE)
                if info.get("statistics_head") else None)
        rule = decision_rule(info, typicality, Path(ref) / DETECTOR_FILE)
        if isinstance(rule, Verdict):  # a part the folder cannot measure would read "typical"
            lacking = {"p_statistics": head is None, "atypicality": typicality is None}
            missing = [p for p in rule.parts if lacking.get(p)]
            if missing:
                raise DataError(f"the verdict combines {', '.join(missing)}, but the folder has "
                                f"no {' or '.join(_PART_FILES[p] for p in missing)}: the files "
                                "come from different calibrations", Path(ref) / DETECTOR_FILE)
        return cls(clf, view, rule, info, typicality, by_statistics, head)

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

    @property
    def threshold(self) -> float:
        """``synthetic_score`` at or above which an image reads synthetic (for display; the
        legacy rule's is on p(synthetic))."""
        return self.rule.threshold

    def p_network(self, batch: torch.Tensor) -> np.ndarray:
        """The network's p(synthetic) of a batch already through :attr:`view` (N, 3, S, S)
        uint8."""
        with torch.inference_mode():
            probs = self.classifier.predict_proba(batch, tta=False)
        return probs[:, synthetic_column(self.classifier)].astype(np.float64)

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

    def _distance(self, batch: torch.Tensor, stats: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The fake-free distance to the real training images and its percentile among the
        real calibration images (``atypicality``): in the noise statistics (runs since they
        exist; with ``features+statistics`` the percentile is the larger of the two), else in
        the network's features; NaN without a reference."""
        n = len(batch)
        if self.typicality is None:
            return np.full(n, np.nan), np.full(n, np.nan)
        if self.by_statistics is None:
            d = self.typicality.distance(self.features(batch))
            return d, self.typicality.percentile(d)
        width = self.by_statistics.reference.shape[1]  # 5 for detectors fitted before 16
        d = self.by_statistics.distance(_columns(batch, stats, width))
        a = self.by_statistics.percentile(d)
        if self.info.get("settings", {}).get("atypicality") != "statistics":
            a = np.fmax(self.typicality.atypicality(self.features(batch)), a)
        return d, a

    def atypicality(self, batch: torch.Tensor, stats: np.ndarray | None = None) -> np.ndarray:
        """How untypical of real galaxies (0..1, no fakes involved): the percentile of the
        distance to the real training images among real calibration images (see
        :meth:`_distance`); NaN without a reference."""
        return self._distance(batch, stats)[1]

    def parts(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """What the verdict is made of, for a batch already through :attr:`view`:
        ``p_network``, ``p_statistics`` (the head's; NaN without one), ``atypicality`` and the
        distance behind it (``atypicality_distance``)."""
        stats = self._statistics(batch)
        head = (self.head.p(_columns(batch, stats, self.head.width)) if self.head is not None
                else np.full(len(batch), np.nan))
        distance, atyp = self._distance(batch, stats)
        return {"p_network": self.p_network(batch), "p_statistics": head, "atypicality": atyp,
                "atypicality_distance": distance}

    def decide(self, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``synthetic_score``, ``verdict`` ("real"/"synthetic") and ``flagged_by`` (the parts
        that flagged each image, comma-separated; "" when real) from :meth:`parts`."""
        flagged = self.rule.flagged(parts)
        why = [",".join(names) if hit else "" for names, hit
               in zip(self.rule.explain(parts), flagged, strict=True)]
        return {"synthetic_score": self.rule.score(parts),
                "verdict": np.where(flagged, "synthetic", "real"),
                "flagged_by": np.array(why, dtype=object)}

    def scores(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """The score, the verdict and its parts for a batch already through :attr:`view`: the
        columns ``galaxymorph predict --detector`` writes (:data:`SCORE_COLUMNS`)."""
        parts = self.parts(batch)
        out = {**self.decide(parts), **parts}
        return {c: out[c] for c in SCORE_COLUMNS}

    def score_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``synthetic_score`` of decoded images (each framed and resampled by :attr:`view`)."""
        if not len(images):
            return np.zeros(0)
        return self.scores(torch.stack([self.view(im) for im in images]))["synthetic_score"]

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
                             batch_size: int = 128) -> dict[str, np.ndarray]:
        """:meth:`scores` of assembled image files (and ``readable``); an unreadable one gets
        NaN scores and an empty verdict."""
        n = len(paths)
        out: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in SCORE_COLUMNS}
        out.update(verdict=np.full(n, "", dtype=object), flagged_by=np.full(n, "", dtype=object),
                   readable=np.zeros(n, dtype=bool))
        for where, batch in self.prepared_batches(paths, batch_size):
            for c, values in self.scores(batch).items():
                out[c][where] = values
            out["readable"][where] = True
        return out

    def to(self, device: str | torch.device) -> Detector:
        self.classifier.to(device)
        return self

    def use_engine(self, kind: str) -> Detector:
        """Run p(synthetic) on engine ``kind`` from the next batch on (``predict --engine``)."""
        self.classifier.use_engine(kind)
        return self


#: What :meth:`Detector.scores` returns, in order: the one score, its verdict and the parts
#: that flagged the image, then the parts themselves (the columns of ``predict --detector``).
SCORE_COLUMNS = DETECTOR_COLUMNS


#: The file each part of a verdict is measured with.
_PART_FILES = {"p_statistics": STATISTICS_HEAD_FILE, "atypicality": TYPICALITY_FILE}


def decision_rule(info: dict[str, Any], typicality: Typicality | None,
                  path: Path) -> Verdict | ThresholdRule:
    """The rule ``detector.json`` records: the one verdict, or an earlier detector's thresholds."""
    if info.get("verdict_model") is not None:
        return Verdict.from_dict(info["verdict_model"], path)
    a_thr = info.get("atypicality_threshold") if typicality is not None else None
    return ThresholdRule(float(info.get("threshold", 0.5)), None if a_thr is None else float(a_thr),
                         None if typicality is None else typicality.p_real)


def _columns(batch: torch.Tensor, stats: np.ndarray | None, width: int) -> np.ndarray:
    """The first ``width`` noise statistics of ``batch``: from ``stats`` when it already holds
    them (the first five columns are the same in every set), else computed."""
    if stats is None or stats.shape[1] < width:
        stats = noise_statistics(batch, width)
    return stats[:, :width]


def load_detector(ref: str | Path, device: str = "cpu", engine: str = "auto") -> Detector:
    """:meth:`Detector.load`."""
    return Detector.load(ref, device, engine)
