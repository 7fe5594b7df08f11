"""What the web app computes, kept free of Streamlit so it can be tested directly.

The page (:mod:`galaxymorph.app.streamlit_app`) only lays out what these functions return. They
go through the same API as everything else (``load_classifier`` and
``Classifier.predict_proba``), so the app cannot drift from ``galaxymorph predict``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxymorph.errors import GalaxymorphError, ImageReadError

#: Streamlit's own upload limit (``server.maxUploadSize``), set explicitly by the launcher;
#: a galaxy cutout is a few hundred kB, a FITS stamp a few MB.
DEFAULT_MAX_UPLOAD_MB = 20
#: Our own decoded-size limit for uploads (tighter than the library's 64 Mpx): a web app must
#: not let one request decode gigabytes.
APP_MAX_PIXELS = 25_000_000
UPLOAD_TYPES = ["jpg", "jpeg", "png", "fits", "fit", "fts", "fz", "tif", "tiff", "webp", "bmp"]
EXAMPLE_LIMIT = 12

ENV_MODEL = "GALAXYMORPH_APP_MODEL"
ENV_MODELS_DIR = "GALAXYMORPH_APP_MODELS_DIR"
ENV_DETECTOR = "GALAXYMORPH_APP_DETECTOR"
ENV_EXAMPLES = "GALAXYMORPH_APP_EXAMPLES"
ENV_MAX_UPLOAD_MB = "GALAXYMORPH_APP_MAX_UPLOAD_MB"
ENV_DEVICE = "GALAXYMORPH_APP_DEVICE"
ENV_INDEX = "GALAXYMORPH_APP_INDEX"
#: Neighbours the "Similar galaxies" panel shows.
SIMILAR_K = 8
NO_INDEX_HELP = ("No similarity index is loaded. Build one from labelled galaxies with "
                 "`galaxymorph index build --model MODEL --out DIR catalog:labels.csv` (or any "
                 "images) and start the app with `galaxymorph app --model MODEL --index DIR`.")


@dataclass
class AppSettings:
    """What the launcher hands the page, through environment variables."""

    model: str = "default"
    models_dir: str | None = None
    detector: str | None = None
    examples: str | None = None
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    device: str = "cpu"
    index: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AppSettings:
        env = dict(os.environ if env is None else env)
        try:
            mb = int(env.get(ENV_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_MB))
        except ValueError:
            mb = DEFAULT_MAX_UPLOAD_MB
        return cls(model=env.get(ENV_MODEL) or "default", models_dir=env.get(ENV_MODELS_DIR) or None,
                   detector=env.get(ENV_DETECTOR) or None, examples=env.get(ENV_EXAMPLES) or None,
                   max_upload_mb=mb, device=env.get(ENV_DEVICE) or "cpu",
                   index=env.get(ENV_INDEX) or None)

    def to_env(self) -> dict[str, str]:
        out = {ENV_MODEL: self.model, ENV_MAX_UPLOAD_MB: str(self.max_upload_mb),
               ENV_DEVICE: self.device}
        for key, value in ((ENV_MODELS_DIR, self.models_dir), (ENV_DETECTOR, self.detector),
                           (ENV_EXAMPLES, self.examples), (ENV_INDEX, self.index)):
            if value:
                out[key] = value
        return out


def default_installed() -> bool:
    from galaxymorph.models.artifact import CARD_FILE
    from galaxymorph.models.loading import default_model_dir

    return (default_model_dir() / CARD_FILE).exists()


def model_choices(settings: AppSettings) -> list[str]:
    """The models offered: the one asked for, the built-in default, run folders in models_dir.

    ``"default"`` is listed when it is installed or when nothing else is (so the page can say
    clearly that it is missing).
    """
    from galaxymorph.models.artifact import CARD_FILE

    choices: list[str] = []
    if settings.model != "default":
        choices.append(settings.model)
    if default_installed():
        choices.append("default")
    if settings.models_dir:
        root = Path(settings.models_dir).expanduser()
        if root.is_dir():
            runs = sorted(str(d) for d in root.iterdir() if (d / CARD_FILE).exists())
            choices += [r for r in runs if r not in choices]
    if settings.model == "default" and "default" not in choices:
        choices.insert(0, "default")
    return choices or ["default"]


@dataclass
class QuestionAnswer:
    """One Galaxy Zoo question as the model answers it."""

    question: str
    #: the predicted share of volunteers who would reach it (the product along its path)
    reach: float
    answers: list[tuple[str, float]]  # (answer, conditional vote fraction)

    @property
    def top(self) -> tuple[str, float]:
        return max(self.answers, key=lambda a: a[1])


def tree_answers(clf, answers: np.ndarray) -> list[QuestionAnswer]:
    """A tree model's answers for one image (``(A,)`` conditional fractions), in the tree's order."""
    from galaxymorph.data.questions import reach

    schema = clf.schema
    reached = reach(answers[None, :], schema)[0]
    return [QuestionAnswer(q.name, float(reached[i]),
                           [(a, float(answers[sl][j])) for j, a in enumerate(q.answers)])
            for i, (q, sl) in enumerate(zip(schema.questions, schema.slices, strict=True))]


@dataclass
class Analysis:
    """Everything the page shows for one image."""

    name: str
    image: np.ndarray  # decoded upload (H, W, 3) uint8
    probs: np.ndarray  # (C,) calibrated probabilities
    class_names: list[str]
    label: int
    cam: object | None = None  # gradcam.CamResult
    cam_error: str | None = None
    #: The detector's one calibrated score, its verdict ("real" / "synthetic" at its own
    #: threshold), the parts that flagged the image, and the parts themselves (``p_network``,
    #: ``p_statistics``, ``atypicality``: 0.5 ordinary, ~1 unlike every real image).
    synthetic_score: float | None = None
    verdict: str | None = None
    flagged_by: list[str] = field(default_factory=list)
    detector_parts: dict[str, float | None] = field(default_factory=dict)
    detector_threshold: float | None = None
    notes: list[str] = field(default_factory=list)
    #: The model's abstention threshold (None: its card has none, so it never abstains).
    threshold: float | None = None
    #: A decision-tree model's answers (:func:`tree_answers`); None for a classifier.
    tree: list[QuestionAnswer] | None = None

    @property
    def uncertain(self) -> bool:
        """The top probability is below the threshold: the page says "uncertain", not a class."""
        return self.threshold is not None and self.probability < self.threshold

    @property
    def label_name(self) -> str:
        return self.class_names[self.label]

    @property
    def probability(self) -> float:
        return float(self.probs[self.label])

    def detector_explanation(self) -> list[str]:
        """Why the detector said what it said, in plain lines: which part flagged the image
        (or that none did), then what each part read."""
        from galaxymorph.detection.verdict import PART_NAMES

        if self.verdict is None or self.synthetic_score is None:
            return []
        thr = self.detector_threshold
        cmp = f" (threshold {thr:.2f})" if thr is not None else ""
        if self.verdict == "synthetic":
            who = " and ".join(PART_NAMES.get(p, p) for p in self.flagged_by) or "the combined score"
            lines = [f"Synthetic: score {self.synthetic_score:.3f}{cmp}, flagged by {who}."]
        else:
            lines = [f"Real: score {self.synthetic_score:.3f}{cmp}; no part flags it."]
        for part, value in self.detector_parts.items():
            if value is None:
                continue
            mark = " (flagged)" if part in self.flagged_by else ""
            if part == "atypicality":
                lines.append(f"{PART_NAMES[part]}: {value:.3f}, less typical of real galaxies "
                             f"than {value:.1%} of them{mark}")
            else:
                lines.append(f"{PART_NAMES.get(part, part)}: p(synthetic) {value:.3f}{mark}")
        return lines

    def table(self):
        """Probabilities per class, highest first (for the bar chart and the table)."""
        import pandas as pd

        df = pd.DataFrame({"class": self.class_names, "probability": self.probs.astype(float)})
        return df.sort_values("probability", ascending=False).reset_index(drop=True)


def decode_upload(data: bytes, name: str, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
                  max_pixels: int = APP_MAX_PIXELS) -> np.ndarray:
    """Decode uploaded bytes; every problem is an :class:`ImageReadError` naming the upload."""
    from galaxymorph.data.imageio import decode_image, is_image_path

    limit = max_upload_mb * 1024 * 1024
    if len(data) > limit:
        raise ImageReadError(f"file is {len(data) / 1e6:.1f} MB; this app accepts at most "
                             f"{max_upload_mb} MB per image", name)
    if not is_image_path(name):
        raise ImageReadError("not an image file type this app reads (JPEG, PNG, TIFF, FITS)", name)
    return decode_image(data, name=name, max_pixels=max_pixels)


def analyse(clf, image: np.ndarray, name: str, tta: bool = False, with_cam: bool = True,
            detector=None) -> Analysis:
    """Classify one decoded image, with Grad-CAM and the detector's verdict if asked."""
    from galaxymorph.inference.gradcam import LOCK, gradcam

    with LOCK:  # the cached model is shared between sessions; hooks must not interleave
        probs, answers = clf.predict_outputs([image], tta=tta)
    probs = probs[0]
    result = Analysis(name, image, probs, list(clf.class_names), int(np.argmax(probs)),
                      threshold=clf.abstain_threshold,
                      tree=tree_answers(clf, answers[0]) if answers is not None else None)
    if with_cam:
        try:
            result.cam = gradcam(clf, image, target=result.label)
        except Exception as exc:  # a map is a bonus: never lose the prediction for it
            result.cam_error = f"Grad-CAM unavailable for this model ({type(exc).__name__}: {exc})"
    if detector is not None:  # a galaxymorph.detection.Detector: its own input chain
        x = detector.view(image).unsqueeze(0)
        with LOCK:
            scores = detector.scores(x)
        result.synthetic_score = float(scores["synthetic_score"][0])
        result.verdict = str(scores["verdict"][0])
        result.flagged_by = [p for p in str(scores["flagged_by"][0]).split(",") if p]
        result.detector_threshold = float(detector.threshold)
        for part in ("p_network", "p_statistics", "atypicality"):
            value = float(scores[part][0])
            result.detector_parts[part] = None if np.isnan(value) else value
    return result


@dataclass
class Neighbour:
    """One galaxy of the index shown beside an upload."""

    rank: int
    path: str
    distance: float  # 1 - cosine similarity
    label: str  # the catalog's class, else "predicted <class>"
    image: np.ndarray | None  # as the model saw it; None when the file cannot be read any more
    error: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name


def similar_galaxies(index, clf, image: np.ndarray, k: int = SIMILAR_K) -> list[Neighbour]:
    """The ``k`` galaxies of ``index`` (a :class:`~galaxymorph.search.index.SimilarityIndex`)
    most like ``image`` in ``clf``'s representation. Raises :class:`GalaxymorphError` when the
    index was built with another model (the message names both)."""
    from galaxymorph.inference.gradcam import LOCK
    from galaxymorph.search.store import check_model

    check_model(index.meta, clf, index.folder, clf.source)
    with LOCK:  # the cached model is shared between sessions
        vectors, _ = clf.embed([image], index.tta)
    ids, dist = index.search(vectors, k)
    labels = index.table[index.label_column] if index.label_column else None
    out = []
    for rank, (i, d) in enumerate(zip(ids[0], dist[0], strict=True), 1):
        if i < 0:
            break
        label = (str(labels.iat[i]) if labels is not None
                 else f"predicted {index.table['predicted_class'].iat[i]}")
        try:
            thumb, error = index.thumbnail(int(i)), None
        except ImageReadError as exc:
            thumb, error = None, str(exc)
        out.append(Neighbour(rank, str(index.table["path"].iat[i]), float(d), label, thumb, error))
    return out


def analyse_bytes(clf, data: bytes, name: str, settings: AppSettings | None = None,
                  tta: bool = False, with_cam: bool = True, detector=None) -> Analysis:
    """Decode then :func:`analyse`; raises :class:`GalaxymorphError` with a message for the page."""
    settings = settings or AppSettings()
    image = decode_upload(data, name, settings.max_upload_mb)
    return analyse(clf, image, name, tta=tta, with_cam=with_cam, detector=detector)


def synthetic_examples(n_per_class: int = 2, size: int = 128, seed: int = 7) -> list[tuple[str, np.ndarray]]:
    """Rendered galaxies (the app ships no real images): ``(caption, image)`` pairs."""
    from galaxymorph.data.synthetic import SYNTHETIC_CLASSES, render_galaxy

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_per_class):
        for kind in SYNTHETIC_CLASSES:
            out.append((f"synthetic {kind} #{k + 1}", render_galaxy(kind, size=size, rng=rng)))
    return out


def folder_examples(folder: str | Path, limit: int = EXAMPLE_LIMIT) -> list[tuple[str, np.ndarray]]:
    """Up to ``limit`` readable images from ``folder`` (recursive), for the gallery."""
    from galaxymorph.data.imageio import read_image
    from galaxymorph.inference.sources import walk_images

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise GalaxymorphError("examples folder not found", root)
    out: list[tuple[str, np.ndarray]] = []
    for path in walk_images(root):
        try:
            out.append((Path(path).name, read_image(path)))
        except ImageReadError:
            continue
        if len(out) >= limit:
            break
    if not out:
        raise GalaxymorphError("no readable images in the examples folder", root)
    return out


#: What makes markdown live: links, emphasis, code, HTML, headings, tables, LaTeX, emoji codes.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~$&:])|(?<=www)(\.)", re.IGNORECASE)


def plain(text: object) -> str:
    """``text`` escaped for Streamlit markdown, so a file name like ``[x](http://...)``,
    ``www.x.org`` or ``**x**`` shows as typed instead of becoming a live link or bold text
    (CommonMark reads a backslash-escaped punctuation character as itself)."""
    return _MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), str(text))


def card_summary(card, split_sources: list | None = None) -> dict[str, str]:
    """The model card as short label -> text pairs for the sidebar. ``split_sources``: the
    ``sources`` of the model's ``split.json`` (:func:`split_sources`), for the image counts
    of a card written before it recorded them."""
    data = card.training_data if isinstance(card.training_data, dict) else {}
    metrics = card.metrics or {}
    rows = {
        "name": card.name or "-",
        "architecture": card.architecture,
        "classes": ", ".join(card.class_names),
    }
    if card.questions:
        rows["questions"] = (f"Galaxy Zoo's decision tree ({card.questions.get('name', '')}: "
                             + ", ".join(q["name"] for q in card.questions["questions"]) + ")")
        rows["taxonomies"] = ", ".join(card.taxonomies)
    rows |= {
        "input": card.preprocessing.describe(),
        "training data": training_sources(data, split_sources) + (
            f"; label map {data['label_map']}" if data.get("label_map") else ""),
    }
    counts = data.get("counts")
    if isinstance(counts, dict) and counts:
        rows["images"] = ", ".join(f"{k} {v}" for k, v in counts.items())
    ci = metrics.get("ci95") or {}
    for key, label in (("accuracy", "test accuracy"), ("f1_macro", "macro F1"), ("ece", "ECE")):
        if key in metrics:
            rows[label] = f"{float(metrics[key]):.3f}"
            if isinstance(ci.get(key), list):  # how much a test set of this size can tell
                rows[label] += f" (95% interval {ci[key][0]:.3f}-{ci[key][1]:.3f})"
    if "n" in metrics:
        rows["test images"] = str(metrics["n"])
    rows["calibration"] = f"temperature {float(card.temperature):.3f}"
    rule = card.abstention if isinstance(card.abstention, dict) else {}
    if isinstance(rule.get("threshold"), (int, float)):
        rows["uncertain"] = (f"below {float(rule['threshold']):.0%} confidence (chosen on the "
                             "validation fold" + (f" to answer {float(rule['target_coverage']):.0%} of it"
                                                  if isinstance(rule.get("target_coverage"), (int, float))
                                                  else "") + ")")
    if card.description:
        rows["description"] = card.description
    return rows


def training_sources(data: dict, split_sources: list | None = None) -> str:
    """Each training source by its data set's name and image count, never the training
    machine's paths: "gz1 (5,617 images), gz2_kaggle/spirals.csv (1,539, weak labels)". The
    counts come from the card (``sources``) or else from the split's; a card without either
    names its sources only."""
    from galaxymorph.data.specs import source_name

    recorded = [s for s in data.get("sources") or [] if isinstance(s, dict) and s.get("spec")]
    if not recorded:
        recorded = [{"spec": s, "weak": False} for s in _texts(data.get("spec"))] + [
            {"spec": s, "weak": True} for s in _texts(data.get("weak"))]
        counted = [s for s in split_sources or [] if isinstance(s, dict)]
        if len(counted) == len(recorded):  # the split lists the sources in the card's order
            for source, split in zip(recorded, counted, strict=True):
                counts = split.get("counts")
                if isinstance(counts, dict):
                    source["images"] = sum(v for v in counts.values() if isinstance(v, int))
    parts = []
    for n, source in enumerate(recorded):
        images = source.get("images")
        notes = ([f"{images:,} image{'' if images == 1 else 's'}" if n == 0 else f"{images:,}"]
                 if isinstance(images, int) else []) + (["weak labels"] if source.get("weak") else [])
        name = str(source.get("name") or source_name(str(source["spec"])))
        parts.append(name + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts) or "-"


def _texts(value) -> list[str]:
    """A card's spec or list of specs as a list (anything else: none)."""
    if isinstance(value, str):
        return [value] if value else []
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def split_sources(ref: str) -> list | None:
    """The ``sources`` of the split.json beside model ``ref`` ("default" or a folder), if any."""

    from galaxymorph.models.loading import default_model_dir

    folder = default_model_dir() if ref == "default" else Path(ref)
    path = (folder.parent.parent if folder.is_file() and folder.parent.name == "checkpoints"
            else folder.parent if folder.is_file() else folder) / "split.json"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _split_sources(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _split_sources(path: str, mtime_ns: int, size: int) -> list | None:
    import json

    try:
        sources = json.loads(Path(path).read_text(encoding="utf-8")).get("sources")
    except (OSError, ValueError, AttributeError):
        return None
    return sources if isinstance(sources, list) else None
