"""``galaxymorph predict`` and ``galaxymorph export``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import (
    BATCH_OPTION,
    CONVENTION_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    INPUTS_HELP,
    MODEL_OPTION,
    PROGRESS_OPTION,
    TAXONOMY_OPTION,
    WORKERS_OPTION,
)

err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
    app.command("export")(export_cmd)
    app.command("pseudo-label")(pseudo_label_cmd)


def predict_cmd(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help=INPUTS_HELP),
    model: str = MODEL_OPTION,
    tta: bool = typer.Option(False, "--tta/--no-tta",
                             help="Average over the 8 rotations/flips: steadier, 8x slower (default off)."),
    batch_size: int = BATCH_OPTION,
    out: Path = typer.Option(None, "--out", help="FILE.csv | FILE.json | FILE.jsonl | FILE.parquet "
                                                 "(default: CSV on standard output)."),
    resume: bool = typer.Option(False, "--resume", help="Skip the images already in --out and append."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    workers: int = WORKERS_OPTION,
    engine: str = ENGINE_OPTION,
    device: str = DEVICE_OPTION,
    detector: str = typer.Option(None, "--detector",
                                 help="Real-vs-synthetic detector run folder: adds its "
                                 "synthetic_score, verdict, flagged_by and parts (p_network, "
                                 "p_statistics, atypicality)."),
    progress: bool = PROGRESS_OPTION,
    crop: float = typer.Option(None, "--crop",
                               help="Fixed centre crop (fraction of the shorter side) instead of the "
                                    "model's own framing (default: the model card's, e.g. auto)."),
    convention: str = CONVENTION_OPTION,
    taxonomy: str = TAXONOMY_OPTION,
) -> None:
    """Predict the morphology of every image; one row per image, errors included."""
    from galaxymorph.inference.predict import predict

    det = None
    if detector:
        from galaxymorph.detection.detector import Detector

        det = Detector.load(detector, device="cpu")  # predict moves it to the model's device
    try:
        result = predict(inputs, model=model, tta=tta, batch_size=batch_size, out=out or "-",
                         resume=resume, overwrite=overwrite, workers=workers, engine=engine,
                         device=device, detector=det, progress=progress, crop=crop,
                         convention=convention, taxonomy=taxonomy)
    except BrokenPipeError:
        # Standard output closed early (`galaxymorph predict ... | head`): stop quietly.
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    from rich.markup import escape

    err_console.print(escape(str(result)), highlight=False, soft_wrap=True)


def export_cmd(
    model: str = typer.Argument(..., help="default | RUN_DIR | CHECKPOINT"),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    out: Path = typer.Option(..., "--out", help="FILE.onnx (a FILE.json model card is written beside it)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
) -> None:
    """Export a model to ONNX, verified against PyTorch with onnxruntime."""
    from galaxymorph.errors import ConfigError

    if fmt.lower() != "onnx":
        raise ConfigError(f"unknown export format '{fmt}'; supported: onnx")
    from galaxymorph.inference.export import export_onnx

    result = export_onnx(model, out, opset=opset)
    err_console.print(str(result), highlight=False, markup=False)


def pseudo_label_cmd(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Unlabelled images: what `predict` takes (files, folders, "
                                            "globs, specs, .txt lists)."),
    out: Path = typer.Option(..., "--out", help="Catalog CSV to write (train --weak-data catalog:OUT)."),
    model: str = typer.Option("default", "--model", help="default | RUN_DIR | ENSEMBLE_DIR"),
    min_confidence: float = typer.Option(0.9, "--min-confidence",
                                         help="Keep images whose calibrated top probability is at least this."),
    max_per_class: int = typer.Option(None, "--max-per-class",
                                      help="Keep at most this many per class (the most confident)."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Default: what the model card says."),
    workers: int = typer.Option(None, "--workers", help="Decoding processes; default: auto."),
    device: str = DEVICE_OPTION,
    progress: bool = PROGRESS_OPTION,
    votes: bool = typer.Option(False, "--votes", help="A decision-tree model: write its vote "
                               "fractions (soft targets for train --questions), not classes."),
) -> None:
    """Write a model's confident answers on unlabelled images as a weak-label catalog for
    self-training (`train --weak-data catalog:OUT`)."""
    from galaxymorph.inference.pseudo_labels import pseudo_label

    info = pseudo_label(inputs, out, model=model, min_confidence=min_confidence,
                        max_per_class=max_per_class, tta=tta, workers=workers, device=device,
                        progress=progress, votes=votes)
    counts = ", ".join(f"{k} {v}" for k, v in info["per_class"].items())
    err_console.print(f"kept {info['kept']} of {info['images_read']} readable images "
                      f"(confidence >= {min_confidence}): {counts}; wrote {out}", highlight=False)
