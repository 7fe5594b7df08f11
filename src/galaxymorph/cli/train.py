"""``galaxymorph train``, ``evaluate``, ``compare`` and ``models``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import CONVENTION_OPTION, TAXONOMY_OPTION

console = Console()

# Consistency training's options, one declaration for `train` and `finetune`.
UNLABELLED_OPTION = typer.Option(
    None, "--unlabelled", help="Unlabelled images (a .txt list, or a dataset spec whose labels are "
    "ignored) for consistency training (FixMatch); repeatable. Validation/test files are left out.")
CONSISTENCY_WEIGHT_OPTION = typer.Option(None, "--consistency-weight",
                                         help="Weight of the unlabelled loss (1).")
CONSISTENCY_THRESHOLD_OPTION = typer.Option(
    None, "--consistency-threshold", help="Confidence a weak view's answer needs to be a target (0.95).")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("calibrate")(calibrate_cmd)
    app.command("compare")(compare_cmd)
    app.command("ensemble")(ensemble_cmd)
    app.command("models")(models_cmd)


def train_cmd(
    data: list[str] = typer.Option(None, "--data", help="Dataset spec, e.g. catalog:gz1/labels.csv; "
                                   "repeatable (each source is split and scored on its own)."),
    weak_data: list[str] = typer.Option(None, "--weak-data",
                                        help="A source with weak labels: training fold only, never "
                                             "validated or tested on; repeatable."),
    noisy_labels: list[str] = typer.Option(None, "--noisy-labels",
                                           help="A --data/--weak-data source (same spec) whose labels "
                                                "follow another convention or are noisy: it gets a "
                                                "learned class-transition matrix; repeatable."),
    unlabelled: list[str] = UNLABELLED_OPTION,
    consistency_weight: float = CONSISTENCY_WEIGHT_OPTION,
    consistency_threshold: float = CONSISTENCY_THRESHOLD_OPTION,
    out: Path = typer.Option(..., "--out", help="Run folder to create (or resume)."),
    label_map: str = typer.Option(None, "--label-map", help="Built-in name (gz1-4) or YAML/JSON file."),
    questions: str = typer.Option(None, "--questions",
                                  help="Train a decision-tree model on Galaxy Zoo's questions "
                                       "(schema gz2): vote fractions and the answers labels imply; "
                                       "classes come from taxonomies (gz1-4, gz2-8, galaxy10)."),
    model: str = typer.Option(None, "--model", help="Registry name (see `galaxymorph models`)."),
    pretrained: bool = typer.Option(None, "--pretrained/--scratch", help="Start from ImageNet weights."),
    transfer: str = typer.Option(None, "--transfer", help="full | last-block | linear-probe"),
    weights_path: str = typer.Option(None, "--weights", help="Local ImageNet weights file (offline)."),
    init_from: str = typer.Option(None, "--init-from",
                                  help="Start from a trained model (default or a folder) of the same "
                                       "architecture; its head is kept for the same classes. "
                                       "`galaxymorph finetune` also takes its preprocessing."),
    epochs: int = typer.Option(None, "--epochs"),
    image_size: int = typer.Option(None, "--image-size", help="Network input side in pixels."),
    crop: float = typer.Option(None, "--crop", help="Centre crop, fraction of the image side "
                               "(with --framing auto: used when no central galaxy is found)."),
    framing: str = typer.Option(None, "--framing",
                                help="fixed (the --crop fraction) | auto (a multiple of the central "
                                     "galaxy's Petrosian radius, measured per image)."),
    frame_radii: float = typer.Option(None, "--frame-radii",
                                      help="Auto framing: half-side of the frame in Petrosian radii."),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr"),
    imbalance: str = typer.Option(None, "--imbalance",
                                  help="none | weighted-loss | sqrt-weighted-loss | balanced-sampler | "
                                       "both | logit-adjusted (learn a class-balanced prior)"),
    logit_tau: float = typer.Option(None, "--logit-tau",
                                    help="logit-adjusted: strength tau of the prior correction (1: full)."),
    source_sampling: str = typer.Option(None, "--source-sampling",
                                        help="proportional | sqrt | equal: how often an epoch draws each "
                                             "--data/--weak-data source (sqrt/equal favour small ones)."),
    survey_augment: bool = typer.Option(False, "--survey-augment",
                                        help="Augment for survey differences: zoom 0.7-1.4x, PSF blur, "
                                             "noise, colour, gamma/asinh stretch, JPEG quality (values "
                                             "in config.yaml; tune them in --config's survey_augment)."),
    label_smoothing: float = typer.Option(None, "--label-smoothing"),
    patience: int = typer.Option(None, "--patience", help="Early-stopping patience (0: off)."),
    monitor: str = typer.Option(None, "--monitor",
                                help="Weights kept: best epoch by val_loss (default) | val_acc | "
                                     "val_f1_macro, or last (full schedule, no early stopping)."),
    seed: int = typer.Option(None, "--seed"),
    split_seed: int = typer.Option(None, "--split-seed"),
    split_file: str = typer.Option(None, "--split-file", help="Reuse a saved split.json."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Test-time augmentation in the final test."),
    synthetic: list[str] = typer.Option(None, "--synthetic", help="Catalog spec of generated images "
                                        "(training fold only); repeatable."),
    synthetic_ratio: float = typer.Option(None, "--synthetic-ratio",
                                          help="Fill each class up to RATIO x the largest class."),
    config: Path = typer.Option(None, "--config", help="YAML config; flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    accelerator: str = typer.Option(None, "--accelerator", help="auto | cpu | gpu | mps"),
    devices: str = typer.Option(None, "--devices", help="Lightning devices: auto, N or list."),
    num_nodes: int = typer.Option(None, "--num-nodes"),
    strategy: str = typer.Option(None, "--strategy", help="Lightning strategy, e.g. ddp."),
    precision: str = typer.Option(None, "--precision", help="32-true | 16-mixed | bf16-mixed"),
    workers: int = typer.Option(None, "--workers", help="Data-loader worker processes."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop training after this long."),
) -> None:
    """Train a classifier; writes config, split, checkpoints, metrics, report and figures."""
    from galaxymorph.training.config import survey_augment_overrides
    from galaxymorph.training.run import train

    extra = survey_augment_overrides() if survey_augment else {}
    result = train(out=out, config_file=config, resume=resume, data=data or None,
                   weak_data=weak_data or None, noisy_label_sources=noisy_labels or None,
                   unlabelled=unlabelled or None, consistency_weight=consistency_weight,
                   consistency_threshold=consistency_threshold,
                   label_map=label_map, questions=questions, model=model, pretrained=pretrained,
                   transfer=transfer, weights_path=weights_path,
                   init_from=init_from,
                   epochs=epochs, image_size=image_size, crop=crop, framing=framing,
                   frame_radii=frame_radii, batch_size=batch_size, lr=lr,
                   imbalance=imbalance, logit_tau=logit_tau, label_smoothing=label_smoothing,
                   source_sampling=source_sampling, early_stopping_patience=patience, monitor=monitor, seed=seed, split_seed=split_seed,
                   split_file=split_file, tta=tta, synthetic=synthetic or None,
                   synthetic_ratio=synthetic_ratio, accelerator=accelerator, devices=devices,
                   num_nodes=num_nodes, strategy=strategy, precision=precision, num_workers=workers,
                   threads=threads, max_time_minutes=max_minutes, **extra)
    _print_metrics(result.metrics, f"test fold of {result.run_dir}")
    console.print(f"run folder: [bold]{result.run_dir}[/] (report.md, metrics.json, model.safetensors)")


def finetune_cmd(
    from_model: str = typer.Option("default", "--from",
                                   help="Parent model: default | RUN_DIR | ENSEMBLE_DIR."),
    data: str = typer.Option(None, "--data", help="Your labelled galaxies (dataset spec)."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or resume)."),
    label_map: str = typer.Option(None, "--label-map", help="Built-in name (gz1-4) or YAML/JSON file."),
    transfer: str = typer.Option(None, "--transfer",
                                 help="full (default; backbone at a lower rate) | last-block | linear-probe"),
    backbone_lr_mult: float = typer.Option(None, "--backbone-lr-mult",
                                           help="Backbone rate / head rate for --transfer full (0.1)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs (15)."),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr", help="Head learning rate (1e-3)."),
    imbalance: str = typer.Option(None, "--imbalance"),
    label_smoothing: float = typer.Option(None, "--label-smoothing"),
    patience: int = typer.Option(None, "--patience", help="Early-stopping patience (5; 0: off)."),
    monitor: str = typer.Option(None, "--monitor", help="val_loss | val_acc | val_f1_macro | last"),
    seed: int = typer.Option(None, "--seed"),
    split_seed: int = typer.Option(None, "--split-seed"),
    split_file: str = typer.Option(None, "--split-file", help="Reuse a saved split.json."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Test-time augmentation in the final test."),
    config: Path = typer.Option(None, "--config", help="YAML config; flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    accelerator: str = typer.Option(None, "--accelerator", help="auto | cpu | gpu | mps"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop training after this long."),
    unlabelled: list[str] = UNLABELLED_OPTION,
    consistency_weight: float = CONSISTENCY_WEIGHT_OPTION,
    consistency_threshold: float = CONSISTENCY_THRESHOLD_OPTION,
) -> None:
    """Fine-tune a galaxymorph model on your own labelled galaxies (its backbone and
    preprocessing; its head when your classes are its classes, else a new one)."""
    from galaxymorph.training.finetune import finetune

    result = finetune(from_model, data=data, out=out, label_map=label_map, config_file=config,
                      resume=resume, transfer=transfer, backbone_lr_mult=backbone_lr_mult,
                      epochs=epochs, batch_size=batch_size, lr=lr, imbalance=imbalance,
                      label_smoothing=label_smoothing, early_stopping_patience=patience,
                      monitor=monitor, seed=seed, split_seed=split_seed, split_file=split_file,
                      tta=tta, accelerator=accelerator, threads=threads, max_time_minutes=max_minutes,
                      unlabelled=unlabelled or None, consistency_weight=consistency_weight,
                      consistency_threshold=consistency_threshold)
    _print_metrics(result.metrics, f"test fold of {result.run_dir}")
    head = "kept" if result.summary.get("head") == "kept" else "new"
    console.print(f"run folder: [bold]{result.run_dir}[/] ({head} head; report.md, metrics.json, "
                  "model.safetensors; use it with --model)")


def evaluate_cmd(
    model: str = typer.Option("default", "--model", help="default | RUN_DIR | CHECKPOINT"),
    data: str = typer.Option(None, "--data", help="Dataset spec (default: the model's training data)."),
    label_map: str = typer.Option(None, "--label-map"),
    split: str = typer.Option(None, "--split", help="test | val | train | all (default: the "
                              "model's test fold on its own training data, else all)"),
    split_file: str = typer.Option(None, "--split-file"),
    tta: bool = typer.Option(False, "--tta", help="Average over the 8 rotations/flips."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Also score images of the "
                                      "model's own training/validation folds and its unlabelled "
                                      "training images (optimistic)."),
    out: Path = typer.Option(..., "--out"),
    crop: float = typer.Option(None, "--crop",
                               help="Fixed centre crop (fraction of the shorter side) instead of the "
                                    "model's own framing."),
    engine: str = typer.Option("auto", "--engine",
                               help="auto (ONNX Runtime on CPU, PyTorch on GPU) | torch | onnx"),
    convention: str = CONVENTION_OPTION,
    taxonomy: str = TAXONOMY_OPTION,
) -> None:
    """Score a model on a dataset: metrics.json, report.md, predictions.csv, errors.png, plots."""
    from rich.markup import escape

    from galaxymorph.evaluation.api import evaluate

    metrics = evaluate(model=model, data=data, label_map=label_map, split=split, tta=tta, out=out,
                       split_file=split_file, include_seen=include_seen, crop=crop, engine=engine,
                       convention=convention, taxonomy=taxonomy)
    for note in metrics.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}")
    _print_metrics(metrics, f"{metrics['split']} of {data or 'the training data'}")
    at = metrics.get("selective", {}).get("accuracy_at_coverage", {})
    if at:
        console.print("accuracy at coverage: " + " · ".join(f"{float(c):.0%} {a:.3f}" for c, a in at.items()))
    console.print(f"written to [bold]{escape(str(out))}[/]")


def calibrate_cmd(
    model: str = typer.Option("default", "--model", help="default | MODEL_DIR | RUN_DIR"),
    coverage: float = typer.Option(0.9, "--coverage", help="Fraction of validation images the "
                                   "model should answer; the rest are 'uncertain'."),
    out: Path = typer.Option(None, "--out", help="Write a copy of the model here (default: in place)."),
    refit_temperature: bool = typer.Option(False, "--refit-temperature"),
    conventions: bool = typer.Option(False, "--conventions",
                                     help="Also re-fit each learned labelling convention "
                                     "(--noisy-labels) on its source's validation images, for "
                                     "predict --convention."),
) -> None:
    """Fit the abstention threshold on the model's validation fold and store it in its card."""
    from galaxymorph.evaluation.calibrate import calibrate

    rule = calibrate(model=model, coverage=coverage, out=out, refit_temperature=refit_temperature,
                     conventions=conventions)
    if not rule.get("threshold") and rule.get("threshold") != 0:
        console.print("no abstention rule: too few labelled validation images (20 needed)")
        return
    console.print(f"uncertain below confidence {rule['threshold']:.3f}: answers "
                  f"{rule['val_coverage']:.1%} of {rule['val_images']} validation images")


def ensemble_cmd(
    runs: list[Path] = typer.Argument(..., help="Run folders sharing classes, preprocessing and split."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Default: what the members' cards say."),
) -> None:
    """Average several runs into one model; temperature on their val fold, metrics on test."""
    from galaxymorph.training.ensemble import ensemble

    metrics = ensemble(runs, out, tta=tta)
    _print_metrics(metrics, f"ensemble of {len(runs)} (test fold)")
    console.print(f"written to [bold]{out}[/]; use it with --model {out}")


def compare_cmd(runs: list[Path] = typer.Argument(..., help="Run folders."),
                out: Path = typer.Option(None, "--out", help="Markdown file to write.")) -> None:
    """Comparison table of finished runs (accuracy, F1, training time, epochs, parameters)."""
    from galaxymorph.evaluation.compare import compare

    console.print(compare(runs, out), markup=False, highlight=False)


def models_cmd() -> None:
    """List the model registry."""
    from rich.table import Table

    from galaxymorph.models.registry import list_models

    table = Table("name", "family", "default size", "ImageNet weights", "description")
    for m in list_models():
        table.add_row(m.name, m.family, str(m.default_image_size), "yes" if m.pretrained_ok else "-",
                      m.description)
    console.print(table)


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    for col in ("precision", "recall", "F1", "avg precision", "support"):
        table.add_column(col, justify="right")
    for name, m in metrics.get("per_class", {}).items():
        ap = m.get("average_precision")
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
                      "-" if ap is None else f"{ap:.3f}", str(m["support"]))
    votes = metrics.get("vote_rmse")
    if votes:
        ci95 = votes.get("ci95")
        console.print(f"vote fractions: RMSE {votes['rmse']:.4f}"
                      + (f" ({ci95[0]:.4f}-{ci95[1]:.4f})" if ci95 else "")
                      + f" over {len(votes['columns'])} columns, {votes['n_images']} images")
    if metrics.get("accuracy") is None:  # a table of votes alone: no classes to score
        return
    if metrics.get("per_class"):
        console.print(table)
    ci = metrics.get("ci95") or {}

    def show(key: str) -> str:
        pair = ci.get(key)
        return f"{metrics[key]:.3f}" + (f" ({pair[0]:.3f}-{pair[1]:.3f})" if pair else "")

    console.print(f"accuracy {show('accuracy')} · macro F1 {show('f1_macro')} · weighted F1 "
                  f"{show('f1_weighted')} · ECE {metrics['ece']:.3f} · n {metrics['n']}"
                  + (" · (95% bootstrap intervals)" if ci else ""))
