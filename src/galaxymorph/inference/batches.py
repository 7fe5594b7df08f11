"""The batch pieces both prediction engines share (local :mod:`~galaxymorph.inference.predict`
and :mod:`~galaxymorph.inference.ray_engine`): how a network sees an image, decoding a batch,
what a pass computes and the rows it writes (:class:`BatchTask`), the progress bar. Their own
module, so neither engine imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from galaxymorph.data.transforms import DEFAULT_FRAME_RADII
from galaxymorph.errors import ImageReadError
from galaxymorph.inference.sources import InputPlan, Item
from galaxymorph.inference.writers import (
    DETECTOR_COLUMNS,
    columns_for,
    missing_detector_values,
    prob_column,
)


@runtime_checkable
class View(Protocol):
    """How one network sees a decoded image, (H, W, 3) uint8 -> (3, S, S) uint8. Picklable,
    for workers: the classifier's :class:`ClassifierView`, or a detector's own input chain."""

    image_size: int

    def __call__(self, image: np.ndarray) -> torch.Tensor: ...


@runtime_checkable
class DetectorLike(Protocol):
    """What predict needs of a real-vs-synthetic detector (``galaxymorph.detection.Detector``;
    taken as an argument so that inference never imports detection)."""

    view: View

    def scores(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """One array per ``DETECTOR_COLUMNS`` name for a batch already through ``view``."""
        ...

    def to(self, device: str | torch.device) -> Any: ...

    def use_engine(self, kind: str) -> Any: ...


@dataclass(frozen=True)
class ClassifierView:
    """A classifier's own preprocessing (centre crop, resize)."""

    image_size: int
    crop: float = 1.0
    framing: str = "fixed"
    frame_radii: float = DEFAULT_FRAME_RADII

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from galaxymorph.data.transforms import Preprocessing, prepare

        return prepare(image, Preprocessing(self.image_size, self.crop, self.framing,
                                            self.frame_radii))


def classifier_view(clf) -> ClassifierView:
    pre = clf.preprocessing
    return ClassifierView(pre.image_size, pre.crop, framing=pre.framing, frame_radii=pre.frame_radii)


class BatchTask:
    """What one pass over the inputs computes of each readable image, and the rows it writes:
    class probabilities (:class:`PredictTask`) or a representation
    (:class:`~galaxymorph.inference.embed.EmbedTask`). Both engines run any task the same way:
    decode with :meth:`views`, :meth:`compute` on the readable images, :meth:`rows` for all.
    Picklable: each Ray actor calls :meth:`compute` with its own copy of the model.
    """

    #: test-time augmentation (None: the model card's default)
    tta: bool | None = None
    #: what the progress bar says
    verb: str = "predicting"
    #: names of a labelled source's label and class-name columns in the rows
    label_columns: tuple[str, str] = ("true_label", "true_label_name")
    #: value kinds of the task's columns that writers cannot tell from the name (Parquet)
    kinds: dict[str, str] = {}  # noqa: RUF012  (read-only class default)

    def columns(self) -> list[str]:
        """The task's own columns, in order."""
        raise NotImplementedError

    def layout(self, known: list[str]) -> list[str]:
        """All output columns: the task's, then a labelled source's (``known``)."""
        return [*self.columns(), *known]

    def views(self, clf) -> list[View]:
        return [classifier_view(clf)]

    def compute(self, clf, tensors: list[torch.Tensor]) -> dict[str, np.ndarray]:
        """Named arrays, one row per image, for a batch of readable images (one tensor per view)."""
        raise NotImplementedError

    def rows(self, keys: list[str], errors: list[str],
             outputs: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
        """Output rows of a batch; ``outputs``: :meth:`compute`'s arrays (None: none readable)."""
        raise NotImplementedError

    def to(self, device: str | torch.device) -> BatchTask:
        """This task with its own networks (a detector) on ``device``."""
        return self


@dataclass
class PredictTask(BatchTask):
    """Class probabilities, and a detector's scores when one is given (``predict``)."""

    class_names: list[str] = field(default_factory=list)
    threshold: float | None = None
    tta: bool | None = False
    detector: DetectorLike | None = None
    #: a decision-tree model's ``vote_<question>_<answer>`` columns (:func:`vote_columns`)
    vote_columns: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, clf, tta: bool | None, detector: DetectorLike | None = None) -> PredictTask:
        return cls(list(clf.class_names), clf.abstain_threshold, tta, detector, vote_columns(clf))

    def columns(self) -> list[str]:
        return columns_for(self.class_names, detector=self.detector is not None,
                           votes=self.vote_columns)

    def views(self, clf) -> list[View]:
        return [classifier_view(clf), *([self.detector.view] if self.detector is not None else [])]

    def compute(self, clf, tensors: list[torch.Tensor]) -> dict[str, np.ndarray]:
        probs, answers = clf.predict_outputs(tensors[0], self.tta)
        out = {"probs": probs} | ({"answers": answers} if answers is not None else {})
        if self.detector is not None:
            out.update(self.detector.scores(tensors[-1]))
        return out

    def rows(self, keys: list[str], errors: list[str],
             outputs: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
        detector = self.detector is not None
        scores = {c: outputs[c] for c in DETECTOR_COLUMNS} if outputs and detector else None
        return make_rows(keys, errors, outputs["probs"] if outputs else None, self.class_names,
                         scores, detector, threshold=self.threshold,
                         answers=outputs.get("answers") if outputs else None,
                         vote_columns=self.vote_columns)

    def to(self, device: str | torch.device) -> PredictTask:
        return replace(self, detector=self.detector.to(device)) if self.detector is not None else self


def decode_batch(plan: InputPlan, items: list[Item], views: list[View]) -> tuple:
    """Decode and prepare ``items``: ``(keys, errors, uint8 tensor per view)``.

    Tensors hold the readable images only, in order; ``errors[i]`` is ``""`` when item ``i``
    decoded. Never raises for one bad image: anything it throws becomes that row's error.
    """
    keys, errors = [], []
    prepared: list[list[torch.Tensor]] = [[] for _ in views]
    for item in items:
        keys.append(item.key)
        try:
            image = plan.read(item)
            seen = [v(image) for v in views]
        except ImageReadError as exc:
            errors.append(error_text(exc))
            continue
        except Exception as exc:  # a decoder bug must not stop a survey run
            errors.append(f"unexpected failure decoding ({type(exc).__name__}: {exc})")
            continue
        errors.append("")
        for bucket, t in zip(prepared, seen, strict=True):
            bucket.append(t)
    tensors = [torch.stack(b) if b else torch.zeros((0, 3, v.image_size, v.image_size), dtype=torch.uint8)
               for b, v in zip(prepared, views, strict=True)]
    return keys, errors, *tensors


def error_text(exc: ImageReadError) -> str:
    """The reason alone: the ``path`` column already names the file."""
    text = str(exc)
    if exc.path and text.startswith(f"{exc.path}: "):
        text = text[len(exc.path) + 2:]
    return text.replace("\n", " ").strip() or "unreadable image"


def vote_columns(clf) -> list[str]:
    """A decision-tree model's ``vote_<question>_<answer>`` output columns (none for a classifier)."""
    from galaxymorph.data.questions import VOTE_PREFIX

    return [VOTE_PREFIX + a for a in clf.schema.answer_names] if clf.is_tree else []


def make_rows(keys: list[str], errors: list[str], probs: np.ndarray | None, class_names: list[str],
              detector_scores: dict[str, np.ndarray] | None = None, detector: bool = False,
              threshold: float | None = None, answers: np.ndarray | None = None,
              vote_columns: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Output rows for one batch; ``probs`` (and each array of ``detector_scores``, and a tree
    model's ``answers``, one per ``vote_columns``) has a row per readable image (errors are
    ``""``). ``threshold``: the model's abstention threshold (``uncertain`` below it)."""
    from galaxymorph.models.calibration import uncertain

    cols = [prob_column(c) for c in class_names] + list(vote_columns)
    if answers is not None and probs is not None:
        probs = np.concatenate([probs, answers], axis=1)  # one row of numbers per image
        unsure_probs = probs[:, :len(class_names)]
    else:
        unsure_probs = probs
    ok_probs = probs.tolist() if probs is not None else []
    labels = unsure_probs.argmax(axis=1).tolist() if probs is not None else []
    unsure = uncertain(unsure_probs, threshold).tolist() if probs is not None else []
    scores = {c: detector_scores[c].tolist() for c in DETECTOR_COLUMNS} if detector_scores else {}
    rows, j = [], 0
    for key, err in zip(keys, errors, strict=True):
        if err:
            row: dict[str, Any] = {"path": key, "label": None, "label_name": None,
                                   "probability": math.nan, "uncertain": None,
                                   **dict.fromkeys(cols, math.nan)}
            if detector:
                row.update(missing_detector_values())
            row["error"] = err
        else:
            p, lab = ok_probs[j], labels[j]
            row = {"path": key, "label": lab, "label_name": class_names[lab],
                   "probability": p[lab], "uncertain": unsure[j], **dict(zip(cols, p, strict=True))}
            if detector:
                row.update({c: scores[c][j] for c in DETECTOR_COLUMNS} if scores
                           else missing_detector_values())
            row["error"] = ""
            j += 1
        rows.append(row)
    return rows


@contextmanager
def counted_progress(plan: InputPlan, skip: set[str], enabled: bool,
                     verb: str = "predicting") -> Iterator[Callable[[int], None]]:
    """A bar with images/s whose total is a count of the inputs (the Ray driver's; the local
    engine takes its total from its one walk). A no-op off a terminal (logs, CI, notebooks)."""
    from galaxymorph.progress import progress_bar as bar
    from galaxymorph.progress import shows

    if not shows(enabled):  # skip counting the inputs for a bar nobody sees
        yield lambda n: None
        return
    total = sum(1 for it in plan if it.key not in skip) if skip else plan.count()
    with bar(verb, total, unit="images", transient=False) as b:
        yield b.advance
