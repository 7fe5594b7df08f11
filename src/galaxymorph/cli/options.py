"""Options that several commands share, declared once."""

from __future__ import annotations

import typer

CONVENTION_OPTION = typer.Option(
    None, "--convention", help="Answer in the labelling convention of one of the model's noisy "
    "training sources (gz1 for the built-in model).")
TAXONOMY_OPTION = typer.Option(
    None, "--taxonomy", help="A decision-tree model's classes: gz1-4 (its default), gz2-8 or "
    "galaxy10 (evaluate: default, the data's own).")
