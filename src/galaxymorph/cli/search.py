"""``galaxymorph embed``, ``similar`` and ``index build|add|odd|map``: thin wrappers over
:mod:`galaxymorph.inference.embed` and :mod:`galaxymorph.search`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from galaxymorph.cli.options import (
    BATCH_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    INPUTS_HELP,
    MODEL_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
)

err_console = Console(stderr=True)

index_app = typer.Typer(name="index", no_args_is_help=True,
                        help="Nearest-neighbour index of a model's embeddings: build, add, odd, map.")

TTA = typer.Option(None, "--tta/--no-tta",
                   help="Mean features over the 8 rotations/flips (default: the model card's; "
                        "on for the built-in model).")
RESUME = typer.Option(False, "--resume", help="Skip the images already embedded and append.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output.")
INDEX = typer.Option(..., "--index", help="Index folder (galaxymorph index build).")


def register(app: typer.Typer) -> None:
    app.command("embed")(embed_cmd)
    app.command("similar")(similar_cmd)
    app.add_typer(index_app, name="index")


def _say(text: object) -> None:
    from rich.markup import escape

    err_console.print(escape(str(text)), highlight=False, soft_wrap=True)


def embed_cmd(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help=INPUTS_HELP),
    out: Path = typer.Option(..., "--out", help="FILE.parquet: path, catalog columns, embedding."),
    model: str = MODEL_OPTION, tta: bool = TTA, batch_size: int = BATCH_OPTION, resume: bool = RESUME,
    overwrite: bool = OVERWRITE, workers: int = WORKERS_OPTION, engine: str = ENGINE_OPTION,
    device: str = DEVICE_OPTION, progress: bool = PROGRESS_OPTION,
    crop: float = typer.Option(None, "--crop", help="Fixed centre crop instead of the model's framing."),
) -> None:
    """Write each image's representation (the model's features before its head, L2-normalised)."""
    from galaxymorph.inference.embed import embed

    _say(embed(inputs, model=model, out=out, tta=tta, batch_size=batch_size, resume=resume,
               overwrite=overwrite, workers=workers, engine=engine, device=device,
               progress=progress, crop=crop))


def similar_cmd(
    queries: list[str] = typer.Argument(..., metavar="QUERY...", help=INPUTS_HELP),
    index: Path = INDEX,
    k: int = typer.Option(10, "--k", help="Neighbours per query."),
    out: Path = typer.Option(..., "--out", help="FILE.csv | .json | .jsonl | .parquet"),
    model: str = typer.Option(None, "--model", help="Default: the index's own model (another "
                              "model is refused)."),
    batch_size: int = BATCH_OPTION, workers: int = WORKERS_OPTION, device: str = DEVICE_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """The k most similar galaxies in an index of each query image: one row per neighbour."""
    from galaxymorph.search.index import similar

    info = similar(index, queries, k=k, out=out, model=model, batch_size=batch_size,
                   workers=workers, device=device, progress=progress)
    _say(f"{info['queries']} queries ({info['unreadable']} unreadable), {k} neighbours each: "
         f"{out} in {info['seconds']} s")


@index_app.command("build")
def build_cmd(
    inputs: list[str] = typer.Argument(..., metavar="SPEC_OR_INPUT...", help=INPUTS_HELP),
    out: Path = typer.Option(..., "--out", help="Index folder to create."),
    model: str = MODEL_OPTION,
    kind: str = typer.Option(None, "--kind", help="flat (exact) | ivf (approximate); default: "
                             "by size (ivf from 20,000 images)."),
    tta: bool = TTA, batch_size: int = BATCH_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index."),
    workers: int = WORKERS_OPTION, engine: str = ENGINE_OPTION, device: str = DEVICE_OPTION, progress: bool = PROGRESS_OPTION,
) -> None:
    """Embed images and build their nearest-neighbour index (embeddings, index, description)."""
    from galaxymorph.search.build import build_index

    _say(build_index(inputs, model=model, out=out, kind=kind, tta=tta, batch_size=batch_size,
                     resume=resume, overwrite=overwrite, workers=workers, engine=engine,
                     device=device, progress=progress))


@index_app.command("add")
def add_cmd(
    inputs: list[str] = typer.Argument(..., metavar="SPEC_OR_INPUT...", help=INPUTS_HELP),
    index: Path = INDEX,
    model: str = typer.Option(None, "--model", help="Default: the index's own model (another "
                              "model is refused)."),
    batch_size: int = BATCH_OPTION, workers: int = WORKERS_OPTION, engine: str = ENGINE_OPTION, device: str = DEVICE_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Add images to an index (those already in it are skipped)."""
    from galaxymorph.search.build import add_to_index

    _say(add_to_index(index, inputs, model=model, batch_size=batch_size, workers=workers,
                      engine=engine, device=device, progress=progress))


@index_app.command("odd")
def odd_cmd(
    index: Path = INDEX,
    out: Path = typer.Option(..., "--out", help="FILE.csv | .json | .jsonl | .parquet"),
    method: str = typer.Option("knn", "--method", help="knn (distance to the k-th neighbour) | "
                               "gmm (Gaussian-mixture density)."),
    k: int = typer.Option(10, "--k", help="The neighbour whose distance scores an image (knn)."),
) -> None:
    """Rank every image of an index by how unlike the rest it is, oddest first."""
    from galaxymorph.search.odd import rank_odd

    info = rank_odd(index, out, method=method, k=k)
    _say(f"{info['images']} images ranked ({method}{f', k={k}' if method == 'knn' else ''}): {out}")


@index_app.command("map")
def map_cmd(
    index: Path = INDEX,
    out: Path = typer.Option(..., "--out", help="map.png"),
    color_by: str = typer.Option(None, "--color-by", help="A column of the index's rows "
                                 "(default: label_name, else predicted_class)."),
    projection: str = typer.Option("umap", "--projection", help="umap | pca"),
    max_points: int = typer.Option(20_000, "--max-points", help="Map a random sample of at most this many."),
    grid: int = typer.Option(12, "--grid", help="Thumbnail grid: N x N cells."),
    coords: Path = typer.Option(None, "--coords", help="Also write the map coordinates (CSV, ...)."),
    seed: int = typer.Option(0, "--seed", help="Sample and UMAP seed."),
) -> None:
    """Draw a 2-D map of an index coloured by class, beside a grid of thumbnails."""
    from galaxymorph.search.maps import draw_map

    info = draw_map(index, out, color_by=color_by, projection=projection, max_points=max_points,
                    grid=grid, seed=seed, coords=coords)
    _say(f"{info['points']} images mapped, {info['thumbnails']} thumbnails "
         f"({info['unreadable']} unreadable), coloured by {info['colour']}: {out}")
