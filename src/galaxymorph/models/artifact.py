"""A trained classifier on disk: ``model.safetensors`` + ``model_card.json``.

Safetensors holds tensors only, so loading a model from an untrusted source never executes
code; the card says how to rebuild the architecture and preprocess images, and records the
classes, training data and measured metrics.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from galaxymorph.data.transforms import DEFAULT_FRAME_RADII, Preprocessing
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.io_utils import atomic_path, write_json
from galaxymorph.models.views import VIEWS

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"


@dataclass
class ModelCard:
    architecture: str
    class_names: list[str]
    image_size: int
    crop: float
    temperature: float = 1.0
    # Cards written before automatic framing hold only ``crop``: they load as fixed framing.
    framing: str = "fixed"
    frame_radii: float = DEFAULT_FRAME_RADII
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    chiral_pairs: list[list[int]] = field(default_factory=list)
    tta_default: bool = False
    name: str = ""
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: When to answer "uncertain": ``{"threshold": top-probability cut, "rule", ...}``, chosen
    #: on the validation fold; empty for cards written before abstention existed.
    abstention: dict[str, Any] = field(default_factory=dict)
    # a fine-tuned model: its parent (name, source, classes, training data, own lineage) and head
    lineage: dict[str, Any] = field(default_factory=dict)
    #: A decision-tree model's questions (:meth:`galaxymorph.data.questions.Schema.to_dict`):
    #: the network outputs their answers, and ``class_names`` are ``default_taxonomy``'s classes.
    #: Empty for a classifier (every card written before decision trees).
    questions: dict[str, Any] = field(default_factory=dict)
    #: name -> taxonomy (:meth:`galaxymorph.data.taxonomies.Taxonomy.to_dict`) plus its
    #: ``adapter`` (fitted on validation images, or null), ``conventions`` (source -> adapter)
    #: and ``abstention``.
    taxonomies: dict[str, Any] = field(default_factory=dict)
    default_taxonomy: str = ""
    #: A tree model's temperature per question (empty: ``temperature`` for every question).
    question_temperatures: list[float] = field(default_factory=list)
    format_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def schema(self):
        """The decision tree (a :class:`~galaxymorph.data.questions.Schema`), or None."""
        if not self.questions:
            return None
        from galaxymorph.data.questions import Schema

        return Schema.from_dict(self.questions)

    @property
    def output_names(self) -> list[str]:
        """What the network's outputs are: the classes, or a tree model's answers."""
        schema = self.schema
        return schema.answer_names if schema is not None else list(self.class_names)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.image_size, self.crop, self.framing, self.frame_radii)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ModelCard:
        """A card from a file's JSON, every field checked: a card is untrusted input, and a bad
        value would otherwise surface as NaN probabilities or a traceback deep in PyTorch."""
        if not isinstance(raw, dict):
            raise ModelError("model card must be a JSON object", where)
        missing = [k for k in ("architecture", "class_names", "image_size", "crop") if k not in raw]
        if missing:
            raise ModelError(f"model card is missing fields: {', '.join(missing)}", where)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        problem = validate_card_fields(known)
        if problem:
            raise ModelError(f"invalid model card: {problem}", where)
        card = cls(**known)
        try:
            card.frame_radii = float(card.frame_radii)
            card.preprocessing  # noqa: B018 - validates framing, crop and size
        except (ConfigError, TypeError, ValueError) as exc:
            raise ModelError(f"model card has invalid preprocessing ({exc})", where) from exc
        return card


#: Bounds on what a card may ask for: beyond them a file is damaged or hostile (a network input
#: of 100,000 px would need terabytes), not a galaxy classifier.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 2048
MAX_CLASSES = 1000
#: model_kwargs a card may pass to the network builder (anything else, e.g. a weights path, would
#: let a downloaded card make us open files).
CARD_MODEL_KWARGS = {"image_size", "dropout", "members", "view"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_size(v: Any, what: str) -> str | None:
    if not _is_int(v) or not MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE:
        return f"{what} must be an integer within {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {v!r}"
    return None


def _check_model_kwargs(kwargs: Any, what: str = "model_kwargs") -> str | None:
    if not isinstance(kwargs, dict):
        return f"{what} must be an object, got {kwargs!r}"
    unknown = sorted(set(kwargs) - CARD_MODEL_KWARGS)
    if unknown:
        return f"{what} has unknown keys {unknown} (allowed: {sorted(CARD_MODEL_KWARGS)})"
    if "image_size" in kwargs and (p := _check_size(kwargs["image_size"], f"{what}.image_size")):
        return p
    if "dropout" in kwargs and not (_is_number(kwargs["dropout"]) and 0 <= kwargs["dropout"] < 1):
        return f"{what}.dropout must be a number within [0, 1), got {kwargs['dropout']!r}"
    if "view" in kwargs and kwargs["view"] not in VIEWS:
        return f"{what}.view must be one of {list(VIEWS)}, got {kwargs['view']!r}"
    if "members" in kwargs:
        members = kwargs["members"]
        if not isinstance(members, list) or not members:
            return f"{what}.members must be a non-empty list"
        for i, m in enumerate(members):
            if not isinstance(m, dict) or not isinstance(m.get("architecture"), str):
                return f"{what}.members[{i}] needs an 'architecture' name"
            if p := _check_model_kwargs(m.get("model_kwargs", {}), f"{what}.members[{i}].model_kwargs"):
                return p
    return None


def validate_card_fields(card: dict[str, Any]) -> str | None:
    """The first problem with a card's fields (as read from JSON), or None."""
    arch = card.get("architecture")
    if not isinstance(arch, str) or not arch:
        return f"architecture must be a model name, got {arch!r}"
    names = card.get("class_names")
    if (not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES
            or not all(isinstance(n, str) and n for n in names)):
        return f"class_names must be a list of 2..{MAX_CLASSES} non-empty strings"
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        return f"class_names repeats {dups}"
    if p := _check_size(card.get("image_size"), "image_size"):
        return p
    crop = card.get("crop")
    if not _is_number(crop) or not 0 < crop <= 1:
        return f"crop must be a fraction within (0, 1], got {crop!r}"
    t = card.get("temperature", 1.0)
    if not _is_number(t) or t <= 0:
        # 0 divides the logits by zero (NaN probabilities); a negative one inverts the ranking.
        return f"temperature must be a positive number, got {t!r}"
    if p := _check_model_kwargs(card.get("model_kwargs", {})):
        return p
    pairs = card.get("chiral_pairs", [])
    n = len(names)
    if not isinstance(pairs, list) or not all(
            isinstance(q, list) and len(q) == 2 and all(_is_int(i) and 0 <= i < n for i in q)
            and q[0] != q[1] for q in pairs):
        return (f"chiral_pairs must be a list of [i, j] pairs of distinct class indices "
                f"within 0..{n - 1}, got {pairs!r}")
    if not isinstance(card.get("tta_default", False), bool):
        return f"tta_default must be true or false, got {card['tta_default']!r}"
    for key in ("name", "description"):
        if not isinstance(card.get(key, ""), str):
            return f"{key} must be a string"
    for key in ("training_data", "training", "metrics"):
        if not isinstance(card.get(key, {}), dict):
            return f"{key} must be an object"
    notes = card.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(x, str) for x in notes):
        return "notes must be a list of strings"
    if p := _check_tree(card):
        return p
    if not _is_int(card.get("format_version", 1)) or card.get("format_version", 1) != 1:
        return f"format_version {card.get('format_version')!r} is not one this version reads (1)"
    return None


def _check_tree(card: dict[str, Any]) -> str | None:
    """The first problem with a card's questions and taxonomies, or None."""
    questions, taxonomies = card.get("questions", {}), card.get("taxonomies", {})
    default = card.get("default_taxonomy", "")
    if not questions:
        if taxonomies or default or card.get("question_temperatures"):
            return "taxonomies and question temperatures need questions"
        return None
    from galaxymorph.data.questions import Schema
    from galaxymorph.data.taxonomies import Taxonomy

    try:
        schema = Schema.from_dict(questions)
    except ValueError as exc:
        return f"questions: {exc}"
    if not isinstance(taxonomies, dict) or not taxonomies:
        return "a decision-tree card needs at least one taxonomy"
    temps = card.get("question_temperatures", [])
    if not isinstance(temps, list) or (temps and (len(temps) != schema.n_questions or not all(
            _is_number(t) and t > 0 for t in temps))):
        return (f"question_temperatures must be {schema.n_questions} positive numbers (one per "
                f"question) or empty, got {temps!r}")
    for name, entry in taxonomies.items():
        try:
            tax = Taxonomy.from_dict(entry)
            tax.check(schema)
        except ValueError as exc:
            return f"taxonomies: {exc}"
        if tax.name != name:
            return f"taxonomy {name!r} is named {tax.name!r} inside"
        k = len(tax.classes)
        adapters = [("adapter", entry.get("adapter"))] + [
            (f"conventions.{c}", a) for c, a in (entry.get("conventions") or {}).items()]
        if not isinstance(entry.get("conventions") or {}, dict):
            return f"taxonomy {name!r}: conventions must be an object"
        for what, adapter in adapters:
            if adapter is not None and (p := _check_adapter(adapter, k)):
                return f"taxonomy {name!r} {what}: {p}"
        rule = entry.get("abstention") or {}
        t = rule.get("threshold") if isinstance(rule, dict) else None
        if t is not None and not (_is_number(t) and 0 <= t <= 1):
            return f"taxonomy {name!r}: abstention threshold must be in [0, 1], got {t!r}"
    if default not in taxonomies:
        return f"default_taxonomy {default!r} is not one of its taxonomies {sorted(taxonomies)}"
    if list(taxonomies[default]["classes"]) != list(card["class_names"]):
        return f"class_names must be the classes of the default taxonomy {default!r}"
    return None


def _check_adapter(adapter: Any, k: int) -> str | None:
    """An adapter is ``{"weight": k x k, "bias": k}`` numbers (an affine map of log-probabilities)."""
    if not isinstance(adapter, dict):
        return "must be an object with weight and bias"
    w, b = adapter.get("weight"), adapter.get("bias")
    rows = w if isinstance(w, list) else []
    if (len(rows) != k or not all(isinstance(r, list) and len(r) == k and all(_is_number(v) for v in r)
                                  for r in rows)
            or not isinstance(b, list) or len(b) != k or not all(_is_number(v) for v in b)):
        return f"weight must be {k}x{k} finite numbers and bias {k}"
    return None


def save_artifact(folder: str | Path, net, card: ModelCard) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"architecture": card.architecture})
    write_json(folder / CARD_FILE, card.to_dict())
    return folder


def read_card(folder: str | Path) -> ModelCard:
    path = Path(folder) / CARD_FILE
    if not path.exists():
        raise ModelError(f"no {CARD_FILE} here: not a galaxymorph model folder", folder)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ModelError(f"model card is not valid JSON ({exc})", path) from exc
    return ModelCard.from_dict(raw, str(path))


def load_artifact(folder: str | Path):
    """Rebuild the network from the card and load its safetensors weights (no pickle)."""
    card = read_card(folder)
    return load_network(folder, card), card


def load_network(folder: str | Path, card: ModelCard):
    """The network of the model folder ``folder`` (whose card is ``card``), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from galaxymorph.models.network import build_network

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise ModelError(f"weights file {WEIGHTS_FILE} is missing", folder)
    net = build_network(card.architecture, len(card.output_names), pretrained=False, **card.model_kwargs)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"not a readable safetensors file ({exc})", weights) from exc
    load_weights(net, state, card, weights)
    return net.eval()


def load_weights(net, state: dict, card: ModelCard, where: str | Path) -> None:
    """Load ``state`` into ``net`` exactly; a mismatch (e.g. a card naming more classes than the
    weights have outputs) is one clear error, not PyTorch's size-mismatch traceback."""
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise ModelError(f"weights do not fit the card ({len(card.output_names)} outputs, "
                         f"architecture '{card.architecture}'): {lines[0] if lines else exc}",
                         where) from None
    if missing or unexpected:
        raise ModelError(f"weights do not fit architecture '{card.architecture}' "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})", where)
