"""``galaxymorph predict`` and ``galaxymorph export``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
    app.command("export")(export_cmd)


def predict_cmd(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Image files, folders (recursive), globs, dataset specs "
                                            "(catalog:CSV, folder:PATH, galaxy10-decals:H5) or catalog CSVs."),
    model: str = typer.Option("default", "--model", help="default | RUN_DIR | CHECKPOINT"),
    tta: bool = typer.Option(False, "--tta/--no-tta",
                             help="Average over the 8 rotations/flips: steadier, 8x slower (default off)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    out: Path = typer.Option(None, "--out", help="FILE.csv | FILE.json | FILE.jsonl | FILE.parquet "
                                                 "(default: CSV on standard output)."),
    resume: bool = typer.Option(False, "--resume", help="Skip the images already in --out and append."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    workers: int = typer.Option(None, "--workers",
                                help="Decoding processes (local) or model actors (ray); default: auto."),
    engine: str = typer.Option("local", "--engine", help="local | ray"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    detector: str = typer.Option(None, "--detector",
                                 help="Real-vs-synthetic detector run folder: adds p_synthetic."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on a terminal."),
    crop: float = typer.Option(None, "--crop",
                               help="Fixed centre crop (fraction of the shorter side) instead of the "
                                    "model's own framing (default: the model card's, e.g. auto)."),
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
                         device=device, detector=det, progress=progress, crop=crop)
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
