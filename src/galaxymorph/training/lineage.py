"""The parent of a fine-tuning run: its network for the run, and the lineage for the card.

A copy of the parent's card is kept in the run folder (``parent_model_card.json``), so the
lineage is on record and ``--resume`` rebuilds the architecture even if the parent has moved
(the checkpoint holds every weight).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from galaxymorph.io_utils import write_json
from galaxymorph.models.artifact import ModelCard
from galaxymorph.training.config import TrainConfig

log = logging.getLogger("galaxymorph")
PARENT_CARD = "parent_model_card.json"


def check_parent(cfg: TrainConfig) -> ModelCard:
    """The card of ``cfg.init_from``, checked to be a classifier of ``cfg.model``'s architecture."""
    from galaxymorph.errors import ConfigError
    from galaxymorph.models.parent import parent_card

    folder, card = parent_card(cfg.init_from)
    if card.architecture != cfg.model:
        raise ConfigError(f"init_from model is {card.architecture}; this run trains {cfg.model} "
                          "(galaxymorph finetune takes the parent's architecture)", folder)
    return card


def parent_network(cfg: TrainConfig, run_dir: Path, classes: list[str],
                   resume: bool) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The network to train, the ``model_kwargs`` that rebuild it, and the card's lineage."""
    from galaxymorph.models.artifact import read_card
    from galaxymorph.models.parent import network_from_parent, parent_folder

    if resume:
        folder, card = None, ModelCard.from_dict(_read(run_dir / PARENT_CARD), str(run_dir / PARENT_CARD))
    else:
        folder = parent_folder(cfg.init_from)
        card = read_card(folder)
        write_json(run_dir / PARENT_CARD, card.to_dict())
    net, plan = network_from_parent(folder, card, classes)
    (log.info if plan.kept else log.warning)(plan.message(card.name or str(cfg.init_from)))
    lineage = {"parent": {"source": str(cfg.init_from), "name": card.name,
                          "architecture": card.architecture, "class_names": card.class_names,
                          "training_data": card.training_data, "metrics": card.metrics,
                          "lineage": card.lineage, "card": PARENT_CARD},
               "head": "kept" if plan.kept else "replaced", "transfer": cfg.transfer}
    if str(cfg.init_from) == "default":
        from importlib.metadata import version  # not the top-level package: no import cycle

        lineage["parent"]["galaxymorph_version"] = version("galaxymorph")
    return net, dict(card.model_kwargs), lineage


def _read(path: Path) -> dict[str, Any]:
    from galaxymorph.errors import ConfigError
    from galaxymorph.io_utils import read_json_object

    card = read_json_object(path)
    if not card:
        raise ConfigError("cannot resume a fine-tune without the parent's card (missing or empty)",
                          path)
    return card
