"""The committed recipes re-run: every file the built-in model's commands name is in the
repository, and every recipe config loads as a training configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from galaxymorph.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "scripts" / "default_model"


def _commands() -> list[str]:
    text = (RECIPES / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "the recipe has no bash block"
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_every_repository_file_the_recipe_names_exists():
    named = []
    for line in _commands():
        words = line.replace('"', " ").split()  # COMMON="..." holds flags too
        for before, word in zip(["", *words], words, strict=False):
            path = word.removeprefix("catalog:")
            if before == "--config" or path.startswith("scripts/"):
                named.append(path)
    assert "scripts/default_model/full.yaml" in named  # the recipe's optimiser settings
    missing = [p for p in named if not (ROOT / p).is_file()]
    assert not missing, f"the recipe names files that are not in the repository: {missing}"


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_config_loads(name):
    cfg = TrainConfig.load(RECIPES / name)
    if name == "full.yaml":  # the values the recipe's README states
        assert (cfg.backbone_lr_mult, cfg.weight_decay) == (0.3, 0.0001)
