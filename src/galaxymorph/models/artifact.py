"""A trained classifier on disk: ``model.safetensors`` + ``model_card.json``.

Safetensors holds tensors only, so loading a model from an untrusted source never executes
code; the card says how to rebuild the architecture and preprocess images, and records the
classes, training data and measured metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from galaxymorph.data.transforms import DEFAULT_FRAME_RADII, Preprocessing
from galaxymorph.errors import ConfigError, ModelError
from galaxymorph.io_utils import atomic_path, write_json

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
    format_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.image_size, self.crop, self.framing, self.frame_radii)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ModelCard:
        try:
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            card = cls(**known)
        except TypeError as exc:
            raise ModelError(f"model card is missing fields ({exc})", where) from exc
        try:
            card.image_size, card.crop = int(card.image_size), float(card.crop)
            card.frame_radii = float(card.frame_radii)
            card.preprocessing  # noqa: B018 - validates framing, crop and size
        except (ConfigError, TypeError, ValueError) as exc:
            raise ModelError(f"model card has invalid preprocessing ({exc})", where) from exc
        return card


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
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"model card is not valid JSON ({exc})", path) from exc
    return ModelCard.from_dict(raw, str(path))


def load_artifact(folder: str | Path):
    """Rebuild the network from the card and load its safetensors weights (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from galaxymorph.models.network import build_network

    folder = Path(folder)
    card = read_card(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise ModelError(f"weights file {WEIGHTS_FILE} is missing", folder)
    net = build_network(card.architecture, len(card.class_names), pretrained=False, **card.model_kwargs)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"not a readable safetensors file ({exc})", weights) from exc
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"weights do not fit architecture '{card.architecture}' "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})", weights)
    return net.eval(), card
