"""Training configuration: explicit, saved with every run, loadable from YAML.

Precedence: defaults < ``--config FILE`` < explicit keyword/CLI values. The run folder keeps
both the file given (``input_config.yaml``) and the fully resolved ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from galaxymorph.data.transforms import DEFAULT_FRAME_RADII, Preprocessing, SurveyAugment
from galaxymorph.errors import ConfigError
from galaxymorph.training.legacy_config import migrate

IMBALANCE = ("none", "weighted-loss", "sqrt-weighted-loss", "balanced-sampler", "both",
             "logit-adjusted")
TRANSFER = ("full", "last-block", "linear-probe")
#: How often a training epoch draws each source's images: as many as it has (proportional),
#: in proportion to the square root of its size (sqrt), or the same share each (equal).
SOURCE_SAMPLING = ("proportional", "sqrt", "equal")
#: monitor -> mode of the best checkpoint and early stopping; "last" keeps the final epoch.
MONITORS = {"val_loss": "min", "val_acc": "max", "val_f1_macro": "max", "last": None}


@dataclass
class TrainConfig:
    # data: one spec, or a list of specs (split and scored per source); weak_data: sources
    # whose labels are weak (e.g. a "Spiral"-only catalog), used in the training fold only
    data: str | list[str] = ""
    weak_data: list[str] = field(default_factory=list)
    label_map: str | None = None
    image_size: int = 96
    crop: float = 1.0  # fixed framing: fraction kept; auto framing: used when no galaxy is found
    framing: str = "fixed"  # fixed | auto (see galaxymorph.data.framing)
    frame_radii: float = DEFAULT_FRAME_RADII
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_file: str | None = None  # reuse a saved split.json instead of making one
    group_by: str | None = None  # catalog column whose equal values must share a fold
    augment: bool = True
    chirality: str = "swap"
    zoom: float = 0.1
    shift: float = 0.05
    # Survey-difference augmentations: zoom range, PSF blur, noise, colour, stretch, JPEG
    # quality, greyscale views (off by default; `--survey-augment` sets the built-in model's).
    # In config.yaml a mapping of SurveyAugment's fields; old files' flat aug_* keys are read
    # into it (galaxymorph.training.legacy_config).
    survey_augment: SurveyAugment = field(default_factory=SurveyAugment)
    # Unlabelled images (a .txt list or any dataset spec, labels ignored) for consistency
    # training (FixMatch, Sohn et al. 2020): the network's confident answer on a mildly
    # augmented view becomes the target of a strongly augmented one (the survey
    # augmentations at probability 0.8), so the unlabelled survey's look is learned online.
    unlabelled: list[str] = field(default_factory=list)
    consistency_weight: float = 1.0  # weight of the unlabelled loss beside the labelled one
    consistency_threshold: float = 0.95  # top probability a weak view's answer needs to count
    unlabelled_ratio: int = 1  # unlabelled images per labelled image in each step
    synthetic: list[str] = field(default_factory=list)  # catalog specs of generated images
    synthetic_ratio: float = 0.0  # per class: add up to ratio x (real train count of the largest class)
    # A decision-tree model (Galaxy Zoo's questions, schema "gz2"): one softmax per question,
    # trained on vote fractions and on the answers hard labels imply; its classes come from
    # taxonomies cut from the answers (galaxymorph.data.taxonomies). None: a classifier.
    questions: str | None = None
    # model
    model: str = "cnn4-wide"
    pretrained: bool = False
    transfer: str = "full"
    backbone_lr_mult: float = 0.1
    weights_path: str | None = None
    # start from this galaxymorph model's weights ("default", a run or ensemble folder of the
    # architecture `model`); its head is kept for the same classes, else replaced
    init_from: str | None = None
    dropout: float | None = None
    # what the network sees: pixels, their whitened log spectrum (frequency), or both
    # (galaxymorph.models.views); recorded in the card's model_kwargs
    view: str = "pixels"
    # optimisation
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    imbalance: str = "weighted-loss"
    label_smoothing: float = 0.0
    # imbalance "logit-adjusted": the loss sees logits + tau * log(training prior), so the
    # network's own logits model a class-balanced prior (Menon et al. 2021)
    logit_tau: float = 1.0
    # A source of 188 clean labels beside 4,500 noisy ones is otherwise a rounding error in
    # every epoch; sqrt/equal draw the small sources more often (with replacement).
    source_sampling: str = "proportional"
    # Sources whose labels follow another convention or are noisy (GZ1's raw votes beside GZ2's
    # debiased clean labels): each gets a learned class-transition matrix T, and the loss sees
    # softmax(logits) @ T for its images (forward correction, Patrini et al. 2017), so the
    # network's own head learns the other sources' convention. Specs as given in data/weak_data.
    noisy_label_sources: list[str] = field(default_factory=list)
    # The matrices' learning rate, times lr: at the network's rate they barely leave the
    # identity in a few epochs (measured: 0.033 -> 0.049 for GZ1's Spiral -> Elliptical in 5).
    noise_lr_mult: float = 10.0
    early_stopping_patience: int = 5
    # Which weights the run keeps (and what early stopping watches): the best epoch by
    # val_loss / val_acc / val_f1_macro, or "last": the end of the schedule, no early stopping.
    monitor: str = "val_loss"
    seed: int = 0
    # evaluation
    tta: bool = False
    calibrate: bool = True
    # hardware (Lightning)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int | None = None
    threads: int | None = None
    max_time_minutes: float | None = None
    cache: bool | str = True  # True: $GALAXYMORPH_HOME/cache; a folder path; False: no disk cache
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.imbalance not in IMBALANCE:
            raise ConfigError(f"imbalance must be one of {IMBALANCE}, got '{self.imbalance}'")
        if self.source_sampling not in SOURCE_SAMPLING:
            raise ConfigError(f"source_sampling must be one of {SOURCE_SAMPLING}, "
                              f"got '{self.source_sampling}'")
        if self.transfer not in TRANSFER:
            raise ConfigError(f"transfer must be one of {TRANSFER}, got '{self.transfer}'")
        if self.scheduler not in ("cosine", "none"):
            raise ConfigError(f"scheduler must be cosine or none, got '{self.scheduler}'")
        if self.monitor not in MONITORS:
            raise ConfigError(f"monitor must be one of {tuple(MONITORS)}, got '{self.monitor}'")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be positive")
        from galaxymorph.models.artifact import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

        # The same bounds as a model card, so every run can be saved and loaded again.
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be within {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels, "
                              f"got {self.image_size}")
        if not 0.0 < self.crop <= 1.0:
            raise ConfigError(f"crop must be a fraction of the image side in (0, 1], got {self.crop}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("label_smoothing must be in [0, 1)")
        from galaxymorph.models.views import check_view

        check_view(self.view)
        if self.init_from and self.view != "pixels":
            raise ConfigError("a run started from a galaxymorph model (init_from) keeps that "
                              f"model's input view; view {self.view!r} needs a new network")
        if self.init_from and self.pretrained:
            raise ConfigError("start from ImageNet (pretrained) or from a galaxymorph model "
                              "(init_from), not both")
        if self.synthetic_ratio < 0:
            raise ConfigError("synthetic_ratio must be >= 0")
        self.preprocessing  # noqa: B018 - validates size, crop and framing
        self.survey_augment = survey_augment_of(self.survey_augment)
        if not 0 < self.noise_lr_mult <= 1000:
            raise ConfigError(f"noise_lr_mult must be within (0, 1000], got {self.noise_lr_mult}")
        if not 0 <= self.logit_tau <= 5:
            raise ConfigError(f"logit_tau must be within 0..5, got {self.logit_tau}")
        self.fractions = tuple(float(f) for f in self.fractions)  # type: ignore[assignment]
        if isinstance(self.synthetic, str):
            self.synthetic = [self.synthetic]
        if isinstance(self.weak_data, str):
            self.weak_data = [self.weak_data]
        if isinstance(self.unlabelled, str):
            self.unlabelled = [self.unlabelled]
        self.unlabelled = [str(u) for u in self.unlabelled]
        if not 0 <= self.consistency_weight <= 100:
            raise ConfigError(f"consistency_weight must be within 0..100, got {self.consistency_weight}")
        if not 0 < self.consistency_threshold <= 1:
            raise ConfigError(f"consistency_threshold must be in (0, 1], got {self.consistency_threshold}")
        if not (isinstance(self.unlabelled_ratio, int) and 1 <= self.unlabelled_ratio <= 16):
            raise ConfigError(f"unlabelled_ratio must be a whole number within 1..16, got "
                              f"{self.unlabelled_ratio}")
        if isinstance(self.noisy_label_sources, str):
            self.noisy_label_sources = [self.noisy_label_sources]
        if isinstance(self.data, (list, tuple)):
            self.data = [str(d) for d in self.data]
            if len(self.data) == 1:
                self.data = self.data[0]
        self.noise_groups()  # validates noisy_label_sources against the sources
        if self.questions is not None:
            self._check_questions()

    def _check_questions(self) -> None:
        from galaxymorph.data.questions import get_schema

        get_schema(self.questions)
        if self.unlabelled:
            raise ConfigError("consistency training (unlabelled) is for class models; a "
                              "decision-tree model (questions) learns from votes and labels")
        if self.synthetic and self.synthetic_ratio > 0:
            raise ConfigError("synthetic images carry class labels only; they are not used by a "
                              "decision-tree model (questions)")
        if self.monitor in ("val_acc", "val_f1_macro"):
            raise ConfigError(f"a decision-tree model has no {self.monitor}; monitor val_loss "
                              "(its vote loss) or last")

    def noise_groups(self) -> list[int]:
        """Per source (``data_specs`` then ``weak_data``): 0 for clean labels, k >= 1 for the
        k-th of ``noisy_label_sources`` (its transition matrix)."""
        sources = self.data_specs + list(self.weak_data)
        unknown = [s for s in self.noisy_label_sources if s not in sources]
        if unknown:
            raise ConfigError(f"noisy-label source {unknown[0]!r} is none of the data sources "
                              f"({', '.join(sources)}); give it exactly as --data/--weak-data do")
        if len(set(self.noisy_label_sources)) == len(sources) and sources:
            raise ConfigError("every source is marked noisy: at least one source must hold the "
                              "labels the model is to learn")
        return [self.noisy_label_sources.index(s) + 1 if s in self.noisy_label_sources else 0
                for s in sources]

    @property
    def data_specs(self) -> list[str]:
        """The labelled sources, as a list (``data`` may be one spec)."""
        if isinstance(self.data, list):
            return list(self.data)
        return [self.data] if self.data else []

    @property
    def data_label(self) -> str:
        """All sources in one line, for titles and summaries."""
        return " + ".join(self.data_specs + [f"{w} (weak)" for w in self.weak_data])

    @property
    def strong_augment(self) -> SurveyAugment:
        """The strong view of consistency training: the run's survey augmentations (the
        built-in ones when it has none), each applied with probability 0.8."""
        from galaxymorph.data.transforms import SURVEY_AUGMENT

        base = self.survey_augment if self.survey_augment.active else SURVEY_AUGMENT
        return replace(base, p=max(base.p, 0.8))

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.image_size, self.crop, self.framing, self.frame_radii)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        d["survey_augment"]["scale"] = list(self.survey_augment.scale)
        return d

    def save(self, path: str | Path) -> Path:
        from galaxymorph.io_utils import write_text

        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> TrainConfig:
        """A configuration from a mapping (a ``config.yaml``, a model card's
        ``training.config``); older files' keys are migrated first (:func:`migrate`)."""
        raw = migrate(raw, where)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {unknown}; known: {sorted(known)}", where)
        if "survey_augment" in raw:
            raw = raw | {"survey_augment": survey_augment_of(raw["survey_augment"], where)}
        return cls(**raw)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), where=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError("configuration file not found", path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", path) from exc
    if not isinstance(raw, dict):
        raise ConfigError("a configuration file must be a mapping of key: value", path)
    return raw


_SURVEY_FIELDS = [f.name for f in fields(SurveyAugment)]


def survey_augment_of(value: SurveyAugment | dict[str, Any] | None,
                      where: str | None = None) -> SurveyAugment:
    """``value`` as a :class:`SurveyAugment` (a mapping of its fields: missing ones default);
    errors name ``where`` (the configuration file)."""
    if isinstance(value, SurveyAugment):
        return replace(value, scale=_scale(value.scale, where))
    if value is None:
        return SurveyAugment()
    if not isinstance(value, dict):
        raise ConfigError(f"survey_augment must be a mapping of {_SURVEY_FIELDS}, got {value!r}", where)
    unknown = sorted(set(value) - set(_SURVEY_FIELDS))
    if unknown:
        raise ConfigError(f"unknown survey_augment key(s) {unknown}; known: {_SURVEY_FIELDS}", where)
    values = dict(value)
    if "scale" in values:
        values["scale"] = _scale(values["scale"], where)
    try:
        if "jpeg" in values:
            values["jpeg"] = int(values["jpeg"])
        return SurveyAugment(**values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"survey_augment: {exc}", where) from exc


def _scale(scale: Any, where: str | None) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError(f"survey_augment.scale must be [min, max], got {scale!r}", where) from None
    return (lo, hi)


def survey_augment_overrides() -> dict[str, Any]:
    """What ``--survey-augment`` sets: the built-in survey augmentations' strengths (a
    configuration file's ``survey_augment.grey``, not one of them, is kept)."""
    from galaxymorph.data.transforms import SURVEY_AUGMENT

    return {"survey_augment": {k: v for k, v in asdict(SURVEY_AUGMENT).items() if k != "grey"}}


def resolve_config(config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the file, then explicit overrides (``None`` means 'not given'). A
    ``survey_augment`` mapping given both ways is merged field by field, the overrides winning."""
    where = str(config_file or "arguments")
    raw: dict[str, Any] = migrate(read_yaml(config_file), where) if config_file else {}
    given = migrate({k: v for k, v in overrides.items() if v is not None}, "arguments")
    if isinstance(raw.get("survey_augment"), dict) and isinstance(given.get("survey_augment"), dict):
        given["survey_augment"] = raw["survey_augment"] | given["survey_augment"]
    raw.update(given)
    return TrainConfig.from_dict(raw, where=where)
