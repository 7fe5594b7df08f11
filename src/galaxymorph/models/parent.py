"""A trained galaxymorph model as the starting point of another: fine-tuning's network.

The parent's backbone, weights and input normalisation (a buffer of the network) come over
as they are. Its head is kept when the new data's classes are the parent's classes (matched
by name, rows reordered to the data's class order) and replaced by a new, randomly
initialised one otherwise. An ensemble parent is fine-tuned as a whole, each member's head
treated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from galaxymorph.data.classes import match_class_names
from galaxymorph.errors import ModelError
from galaxymorph.models.artifact import CARD_FILE, WEIGHTS_FILE, ModelCard, load_artifact, read_card
from galaxymorph.models.loading import default_model_dir

DEFAULT = "default"
#: written next to the card by ``galaxymorph detector train`` (detection sits above this layer)
DETECTOR_FILE = "detector.json"


def parent_folder(ref: str | Path) -> Path:
    """The model folder named by ``ref`` (``default``, a run, model or ensemble folder), checked
    to hold a classifier's card and weights: one clear error otherwise."""
    folder = default_model_dir() if str(ref) == DEFAULT else Path(ref)
    if not folder.exists():
        raise ModelError("no such model folder (use 'default', a run folder or an ensemble "
                         "folder)", folder)
    if folder.is_file():
        raise ModelError("fine-tuning starts from a model folder (the one holding "
                         f"{CARD_FILE} and {WEIGHTS_FILE}), not a file", folder)
    if (folder / DETECTOR_FILE).exists():
        raise ModelError("this is a real-vs-synthetic detector, not a morphology classifier; "
                         "fine-tune from 'default', a classifier run or an ensemble", folder)
    if not (folder / CARD_FILE).exists():
        raise ModelError(f"no {CARD_FILE} here: not a finished galaxymorph model folder", folder)
    if not (folder / WEIGHTS_FILE).exists():
        raise ModelError(f"the model's weights file {WEIGHTS_FILE} is missing", folder)
    return folder


@dataclass
class HeadPlan:
    """What happens to the parent's head: kept (rows reordered) or replaced."""

    parent_classes: list[str]
    classes: list[str]
    order: list[int] | None  # parent row of each new class; None: a new head

    @property
    def kept(self) -> bool:
        return self.order is not None

    def message(self, parent: str) -> str:
        if self.kept:
            return f"keeping the head of {parent}: the data's classes are its classes {self.parent_classes}"
        return (f"new head for the {len(self.classes)} classes {self.classes} "
                f"(the classes of {parent} are {self.parent_classes})")


def plan_head(parent_classes: list[str], classes: list[str]) -> HeadPlan:
    return HeadPlan(list(parent_classes), list(classes), match_class_names(classes, parent_classes))


def network_from_parent(folder: Path | None, card: ModelCard, classes: list[str]) -> tuple[nn.Module, HeadPlan]:
    """The parent's network with a head for ``classes``.

    ``folder=None`` builds the architecture without the parent's weights (resuming a
    fine-tune, whose checkpoint holds every weight).
    """
    from galaxymorph.models.ensemble import members_of
    from galaxymorph.models.network import build_network

    if folder is None:
        net = build_network(card.architecture, len(card.output_names), pretrained=False, **card.model_kwargs)
    else:
        net, card = load_artifact(folder)
    plan = plan_head(card.output_names, classes)
    for member in members_of(net):
        _fit_head(member, plan)
    return net.train(), plan  # a loaded artifact is in eval mode; Lightning keeps modes as found


def _fit_head(net: nn.Module, plan: HeadPlan) -> None:
    import torch

    from galaxymorph.models.registry import model_spec, tagged_module

    root = tagged_module(net)
    name = model_spec(net).head
    head = root.get_submodule(name)
    if not isinstance(head, nn.Linear):
        raise ModelError(f"the head '{name}' of this {type(root).__name__} is not a linear layer; "
                         "it cannot be fine-tuned")
    if plan.kept:
        if plan.order != list(range(len(plan.order))):
            with torch.no_grad():
                head.weight.copy_(head.weight[plan.order].clone())
                if head.bias is not None:
                    head.bias.copy_(head.bias[plan.order].clone())
        return
    root.set_submodule(name, nn.Linear(head.in_features, len(plan.classes), bias=head.bias is not None))


def parent_card(ref: str | Path) -> tuple[Path, ModelCard]:
    folder = parent_folder(ref)
    return folder, read_card(folder)
