"""Options that several commands share, declared once."""

from __future__ import annotations

import typer

CONVENTION_OPTION = typer.Option(
    None, "--convention", help="Answer in the labelling convention of one of the model's noisy "
    "training sources (gz1 for the built-in model).")
TAXONOMY_OPTION = typer.Option(
    None, "--taxonomy", help="A decision-tree model's classes: gz1-4 (its default), gz2-8 or "
    "galaxy10 (evaluate: default, the data's own).")

#: What a batch command reads (predict, pseudo-label, embed, index build, similar).
INPUTS_HELP = ("Image files, folders (recursive), globs, dataset specs (catalog:CSV, folder:PATH, "
               "galaxy10-decals:H5), catalog CSVs or .txt lists of image paths.")
MODEL_OPTION = typer.Option("default", "--model", help="default | RUN_DIR | CHECKPOINT")
BATCH_OPTION = typer.Option(64, "--batch-size", help="Images per forward pass.")
WORKERS_OPTION = typer.Option(
    None, "--workers", help="Decoding processes (or Ray model actors with --engine ray); default: auto.")
ENGINE_OPTION = typer.Option(
    "auto", "--engine", help="auto (ONNX Runtime on CPU, PyTorch on GPU) | torch | onnx | ray "
    "('local': the old name of auto).")
DEVICE_OPTION = typer.Option("auto", "--device", help="auto | cpu | cuda | mps")
PROGRESS_OPTION = typer.Option(True, "--progress/--no-progress", help="Progress bar on a terminal.")
