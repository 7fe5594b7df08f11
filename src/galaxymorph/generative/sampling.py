"""Load a trained generator from its run folder and write generated images as a dataset.

The output is a catalog (``labels.csv``: filename, label, label_name) whose labels are the
*real* dataset's class indices and names, so ``catalog:OUT/labels.csv`` can be added to a
real training fold by class name. PNGs are written first and the CSV last (atomically), so a
folder with a ``labels.csv`` is always complete.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxymorph.data.provenance import SAMPLE_CARD
from galaxymorph.errors import GalaxymorphError, ModelError
from galaxymorph.generative.networks import Generator
from galaxymorph.generative.run_files import CARD, CARD_FORMAT, WEIGHTS
from galaxymorph.io_utils import write_json, write_text
from galaxymorph.runtime import resolve_device


@dataclass
class TrainedGenerator:
    """An EMA generator with its card: which classes it draws and at what size."""

    net: Generator
    card: dict[str, Any]
    run_dir: Path

    @property
    def class_names(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def class_labels(self) -> list[int]:
        return [int(v) for v in self.card["class_labels"]]

    @property
    def image_size(self) -> int:
        return int(self.card["image_size"])

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def class_index(self, name: str) -> int:
        """Position of a class among the modelled ones (by name, or by dataset label)."""
        if name in self.class_names:
            return self.class_names.index(name)
        if name.isdigit() and int(name) in self.class_labels:
            return self.class_labels.index(int(name))
        raise GalaxymorphError(f"this GAN does not model class '{name}'; it draws "
                            f"{', '.join(self.class_names)}", self.run_dir)

    @torch.no_grad()
    def generate(self, classes: torch.Tensor, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """uint8 images ``(N, 3, S, S)`` for class positions ``classes`` (deterministic per seed)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(len(classes), self.net.z_dim, generator=g)
        out = []
        for i in range(0, len(classes), batch_size):
            x = self.net(z[i:i + batch_size].to(self.device), classes[i:i + batch_size].to(self.device))
            out.append(x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu())
        if not out:
            return torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.cat(out)


def load_generator(run_dir: str | Path, device: str = "cpu") -> TrainedGenerator:
    """The EMA generator of a GAN run folder (``generator.safetensors`` + ``gan_card.json``)."""
    run_dir = Path(run_dir)
    card_path, weights = run_dir / CARD, run_dir / WEIGHTS
    if not run_dir.is_dir():
        raise GalaxymorphError("GAN run folder not found", run_dir)
    if not card_path.exists() or not weights.exists():
        raise ModelError(f"not a trained GAN run: {CARD} and {WEIGHTS} are written at the end of "
                         "each training epoch and are missing here", run_dir,
                         hint="train one with `galaxymorph gan train --data SPEC --out RUN_DIR`")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable GAN card ({exc})", card_path) from exc
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"unknown GAN card format {card.get('format')!r} (expected {CARD_FORMAT})",
                         card_path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    net = Generator(len(card["classes"]), int(card["image_size"]), int(card["z_dim"]),
                    int(card["g_channels"]))
    try:
        net.load_state_dict(load_file(str(weights)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ModelError(f"generator weights do not load ({exc})", weights) from exc
    net.eval().to(resolve_device(device))
    return TrainedGenerator(net, card, run_dir)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "class"


def sample(run_dir: str | Path, out_dir: str | Path, n: int, class_name: str | None = None,
           seed: int = 0, batch_size: int = 256, device: str = "cpu",
           overwrite: bool = False) -> Path:
    """Write ``n`` PNGs per modelled class (or of ``class_name`` only) and ``labels.csv``.

    Returns the CSV's path: ``catalog:<it>`` opens the generated set as a dataset.
    """
    from PIL import Image

    if n < 1:
        raise GalaxymorphError(f"--n must be at least 1, got {n}")
    gen = load_generator(run_dir, device)
    out_dir = Path(out_dir)
    csv_path = out_dir / "labels.csv"
    if csv_path.exists() and not overwrite:
        raise GalaxymorphError("already holds a generated set (labels.csv)", out_dir,
                            hint="choose another --out, or pass --overwrite")
    positions = [gen.class_index(class_name)] if class_name is not None else list(range(len(gen.class_names)))
    classes = torch.tensor(np.repeat(positions, n), dtype=torch.long)
    images = gen.generate(classes, seed=seed, batch_size=batch_size)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int, str]] = []
    counter: dict[int, int] = {}
    for img, pos in zip(images, classes.tolist(), strict=True):
        j = counter.get(pos, 0)
        counter[pos] = j + 1
        name = gen.class_names[pos]
        rel = f"images/{_safe(name)}_{j:05d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(out_dir / rel, format="PNG")
        rows.append((rel, gen.class_labels[pos], name))
    write_json(out_dir / SAMPLE_CARD, {
        "generator": str(Path(run_dir).resolve()), "seed": seed, "n_per_class": n,
        "classes": [gen.class_names[p] for p in positions], "image_size": gen.image_size,
        "source_data": gen.card.get("data"), "source_crop": gen.card.get("crop"),
        "label_map": gen.card.get("label_map"), "dataset_classes": gen.card.get("dataset_classes"),
        "generator_split": gen.card.get("split")})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["filename", "label", "label_name"])
    writer.writerows(rows)
    write_text(csv_path, buf.getvalue())
    return csv_path
