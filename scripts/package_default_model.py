"""Install a finished run as galaxymorph's built-in default model (src/galaxymorph/default_model/).

    .venv/bin/python scripts/package_default_model.py RUN_DIR [--eval EVAL_DIR] [--note TEXT ...]

Copies the safetensors weights and split.json, and writes a model card that records the
training data, the recipe (resolved config) and the metrics measured on the run's own test
fold (and, with --eval, an extra evaluation such as one with test-time augmentation).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from galaxymorph.io_utils import write_json
from galaxymorph.models.artifact import CARD_FILE, WEIGHTS_FILE, read_card

TARGET = Path(__file__).resolve().parents[1] / "src" / "galaxymorph" / "default_model"
KEYS = ("n", "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
        "recall_weighted", "f1_weighted", "ece", "ci95", "per_class", "confusion_matrix", "tta",
        "split")


def intervals_from_confusion(metrics: dict) -> dict:
    """Bootstrap intervals of a run evaluated before metrics.json carried them: the
    (true, predicted) pairs are all in the confusion matrix."""
    import numpy as np

    from galaxymorph.evaluation.metrics import bootstrap_intervals

    cm = np.asarray(metrics["confusion_matrix"])
    k = len(cm)
    y_true = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(k), k), cm.ravel())
    return bootstrap_intervals(y_true, y_pred, list(metrics["per_class"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--eval", type=Path, action="append", default=[], help="extra evaluation folders")
    ap.add_argument("--name", default="galaxymorph-gz1-4")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    card = read_card(args.run_dir)
    config = yaml.safe_load((args.run_dir / "config.yaml").read_text())
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    summary = json.loads((args.run_dir / "summary.json").read_text())
    card.name = args.name
    card.description = ("Galaxy Zoo 1 four-class morphology (Elliptical, Spiral, Edge-on, Merger) "
                        "from SDSS gri colour cutouts, centre-cropped.")
    card.training_data.update({
        "spec": "catalog:../shared/data/gz1/labels.csv", "label_map": "gz1-4",
        "source": "Galaxy Zoo 1 (Lintott et al. 2008, 2011) SDSS cutouts, 5,617 images after "
                  "dropping Dont_know; stratified 80/10/10 split (split.json, seed "
                  f"{config.get('split_seed', 0)})"})
    card.training = {"config": config, "epochs": summary["epochs"],
                     "train_seconds": summary["train_seconds"], "parameters": summary["parameters"],
                     "hardware": "2 CPU cores"}
    # Flat test-fold metrics (what the app and `galaxymorph evaluate` readers expect), plus any
    # extra evaluations by folder name.
    metrics.setdefault("ci95", intervals_from_confusion(metrics))
    card.metrics = {k: metrics[k] for k in KEYS if k in metrics}
    for folder in args.eval:
        m = json.loads((folder / "metrics.json").read_text())
        card.metrics.setdefault("other_evaluations", {})[folder.name] = {k: m[k] for k in KEYS if k in m}
    card.notes = [*args.note,
                  "Metrics are on the run's own held-out test fold (never seen in training or "
                  "model selection); validation fold used for early stopping and temperature.",
                  "Probabilities are temperature-scaled (temperature fitted on the validation fold)."]
    TARGET.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run_dir / WEIGHTS_FILE, TARGET / WEIGHTS_FILE)
    shutil.copyfile(args.run_dir / "split.json", TARGET / "split.json")
    write_json(TARGET / CARD_FILE, card.to_dict())
    print(f"installed {args.run_dir} as the default model in {TARGET}")


if __name__ == "__main__":
    main()
