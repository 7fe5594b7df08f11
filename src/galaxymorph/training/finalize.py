"""The end of a class-head run: best weights, temperature and abstention on the validation fold,
test-fold metrics and figures, ``summary.json`` and the model artifact.

The pieces shared with :mod:`galaxymorph.training.tree_finalize` live here too, so neither
imports the training loop (:mod:`galaxymorph.training.run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxymorph.data.unlabelled import UNLABELLED_USED_FILE
from galaxymorph.io_utils import write_json
from galaxymorph.training.config import TrainConfig


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    summary: dict[str, Any]


def best_network(module, best_path: str):
    """The module's network with the run's kept weights, in eval mode."""
    state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return module.net.eval()


def scoring_engine(net, cfg: TrainConfig):
    """PyTorch, not an exported graph: these weights are scored once, where they were trained."""
    from galaxymorph.models.engine import TorchEngine

    return TorchEngine(net, cfg.accelerator if cfg.accelerator != "gpu" else "cuda")


def run_summary(run_dir: Path, cfg: TrainConfig, folds, net, best_path: str, train_seconds: float,
                epochs_run: int, wall_seconds: float, temperature: float,
                lineage: dict[str, Any] | None) -> dict[str, Any]:
    """``summary.json``'s common part (training time, epochs, sizes), and ``curves.png``."""
    from galaxymorph.evaluation.plots import plot_curves
    from galaxymorph.training.history import read_history

    history = read_history(run_dir / "logs" / "metrics.csv")
    plot_curves(history, run_dir / "curves.png")
    epochs_done = len(history.get("val_loss", [])) or epochs_run + 1
    return {
        "model": cfg.model, "pretrained": cfg.pretrained, "init_from": cfg.init_from,
        "head": (lineage or {}).get("head"), "transfer": cfg.transfer,
        "data": cfg.data, "weak_data": cfg.weak_data, "label_map": cfg.label_map, "image_size": cfg.image_size, "crop": cfg.crop,
        "framing": cfg.framing,
        "epochs": epochs_done, "max_epochs": cfg.epochs,
        # Both summed over every call of a resumed run (Lightning's Timer and WallClock).
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(wall_seconds, 1), "parameters": int(sum(p.numel() for p in net.parameters())),
        "best_checkpoint": Path(best_path).name, "temperature": temperature,
        "best_val_loss": min(history.get("val_loss", [float("nan")])),
        "train_images": len(folds.train_labels),
        "synthetic_images": folds.synthetic_count,
        "synthetic_warnings": folds.warnings,
        "unlabelled": folds.unlabelled_counts,
    }


def training_data_record(cfg: TrainConfig, folds) -> dict[str, Any]:
    """The card's ``training_data``: sources (each named, with its images), label map, split
    file and fold sizes."""
    return {"spec": cfg.data, "label_map": cfg.label_map, "split": "split.json",
            "counts": folds.counts, "sources": folds.source_counts()} \
        | ({"weak": cfg.weak_data} if cfg.weak_data else {}) \
        | ({"unlabelled": folds.unlabelled_counts, "unlabelled_files": UNLABELLED_USED_FILE}
           if cfg.unlabelled else {})


def finalize(run_dir: Path, cfg: TrainConfig, dm, module, best_path: str, train_seconds: float,
             model_kwargs: dict[str, Any], epochs_run: int, wall_seconds: float,
             lineage: dict[str, Any] | None = None) -> RunResult:
    """Best weights -> temperature on val -> test metrics, figures, report, model artifact."""
    from galaxymorph.data.transforms import swap_table
    from galaxymorph.evaluation.evaluate import dataset_logits, write_evaluation
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.calibration import (
        abstention_rule,
        fit_temperature,
        softmax,
        source_balance,
    )

    net = best_network(module, best_path)
    folds = dm.setup()
    ds = folds.dataset
    swap = swap_table(ds.num_classes, ds.chiral_pairs)
    engine = scoring_engine(net, cfg)
    val_logits, val_y = dataset_logits(engine, dm.fold_dataset("val"), tta=cfg.tta, swap=swap)
    temperature = (fit_temperature(val_logits, val_y, weights=source_balance(folds.origin("val")))
                   if cfg.calibrate and len(val_y) else 1.0)
    abstention = abstention_rule(softmax(val_logits, temperature), val_y) if len(val_y) else {}
    test_logits, test_y = dataset_logits(engine, dm.fold_dataset("test"), tta=cfg.tta, swap=swap)
    summary = run_summary(run_dir, cfg, folds, net, best_path, train_seconds, epochs_run,
                          wall_seconds, temperature, lineage) | {
        # Learned per noisy source: T[true][observed], how its labels relate to the clean ones.
        "label_transitions": {spec: {"classes": ds.class_names,
                                     "matrix": [[round(float(v), 4) for v in row] for row in t]}
                              for spec, t in zip(cfg.noisy_label_sources,
                                                 module.transitions().detach().cpu().numpy(), strict=True)},
        "skipped_unreadable": folds.skipped,
    }
    epochs_done = summary["epochs"]
    per_source = source_metrics(folds, test_y, test_logits, temperature)
    metrics = write_evaluation(
        run_dir, test_y, test_logits, ds.class_names, temperature,
        title=f"{cfg.model} on {cfg.data_label} (test fold)",
        extra={"split": "test", "tta": cfg.tta, "training_time_seconds": summary["train_seconds"],
               "epochs": epochs_done} | ({"per_source": per_source} if per_source else {}),
        threshold=abstention.get("threshold"),
        sections=({"Per source (test fold)": source_table(per_source)} if per_source else {})
        | {"Run": "\n".join(f"- {k}: {v}" for k, v in summary.items())})
    write_json(run_dir / "summary.json", summary)
    training_data = training_data_record(cfg, folds)
    if lineage:
        lineage = lineage | {"finetune_data": training_data}
    card = ModelCard(
        architecture=cfg.model, class_names=ds.class_names, image_size=cfg.image_size,
        crop=cfg.crop, framing=cfg.framing, frame_radii=cfg.frame_radii,
        temperature=temperature, model_kwargs=model_kwargs,
        chiral_pairs=[list(p) for p in ds.chiral_pairs], tta_default=cfg.tta,
        name=run_dir.name,
        description=f"fine-tuned from {lineage['parent']['name'] or cfg.init_from}" if lineage else "",
        training_data=training_data,
        training={k: summary[k] for k in ("epochs", "train_seconds", "parameters")} | {
            "pretrained": cfg.pretrained, "init_from": cfg.init_from, "transfer": cfg.transfer,
            "seed": cfg.seed} | ({"label_transitions": summary["label_transitions"]}
                                 if summary["label_transitions"] else {}),
        metrics={k: metrics[k] for k in ("n", "accuracy", "f1_macro", "f1_weighted", "ece")},
        abstention=abstention,
        lineage=lineage or {},
    )
    save_artifact(run_dir, net, card)
    return RunResult(run_dir, metrics, summary)


def source_metrics(folds, y: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, Any]:
    """Test metrics of each source of a multi-source run (``{}`` for a single source)."""
    from galaxymorph.evaluation.metrics import classification_metrics
    from galaxymorph.models.calibration import softmax

    parts = folds.dataset.parts
    if len(parts) < 2:
        return {}
    origin = folds.origin("test")
    probs = softmax(logits, temperature)
    out: dict[str, Any] = {}
    for k, part in enumerate(parts):
        sel = origin == k
        if part.weak or not sel.any():
            continue
        m = classification_metrics(y[sel], probs[sel], folds.dataset.class_names)
        out[part.spec] = {key: m[key] for key in ("n", "accuracy", "f1_macro", "ece", "ci95")
                          if key in m} | {"per_class_f1": {c: v["f1"] for c, v in m["per_class"].items()}}
    return out


def source_table(per_source: dict[str, Any]) -> str:
    rows = ["| source | n | accuracy | 95% interval | macro F1 | 95% interval | ECE |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec, m in per_source.items():
        ci = m.get("ci95") or {}
        acc, f1 = ci.get("accuracy") or ["", ""], ci.get("f1_macro") or ["", ""]
        rows.append(f"| {spec} | {m['n']} | {m['accuracy']:.3f} | {_pair(acc)} | "
                    f"{m['f1_macro']:.3f} | {_pair(f1)} | {m['ece']:.3f} |")
    return "\n".join(rows)


def _pair(pair) -> str:
    return f"{pair[0]:.3f} to {pair[1]:.3f}" if pair and pair[0] != "" else ""

