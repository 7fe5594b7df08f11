"""``galaxymorph data``: inspect, preview, list and download datasets.

Everything heavy (pandas, h5py, matplotlib, requests) is imported inside the commands so that
``galaxymorph --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

SPEC_HELP = ("Dataset: galaxy10-decals[:PATH], galaxy10-sdss[:PATH], catalog:PATH.csv, "
             "folder:PATH, or a .csv, .h5 or folder path.")
LABEL_MAP_HELP = "Label map: a built-in name (gz1-4) or a YAML/JSON file."

data_app = typer.Typer(help="Inspect, preview, list and download datasets.", no_args_is_help=True)


class PlotKind(str, Enum):
    grid = "grid"
    counts = "counts"


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _bar(fraction: float, width: int = 24) -> str:
    """A text bar with eighth-block resolution, so a 1.7% class is still visible."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")


@data_app.command("info")
def info(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    label_map: str | None = typer.Option(None, "--label-map", "-m", help=LABEL_MAP_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Class counts, fractions, image size and imbalance of a dataset."""
    from galaxymorph.data import open_dataset
    from galaxymorph.data.explore import summarize

    summary = summarize(open_dataset(spec, label_map=label_map))
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        _require_images(summary)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(summary["spec"]), title_justify="left")
    table.add_column("label", justify="right")
    table.add_column("name")
    table.add_column("count", justify="right")
    table.add_column("fraction", justify="right")
    table.add_column("", style="cyan", no_wrap=True)
    top = max((c["fraction"] for c in summary["classes"]), default=0.0) or 1.0
    for c in summary["classes"]:
        table.add_row(str(c["label"]), escape(c["name"]), f"{c['count']:,}",
                      f"{100 * c['fraction']:.1f}%", _bar(c["fraction"] / top))
    console = Console(emoji=False)
    console.print(table)
    shape = summary["image_shape"]
    size = "x".join(map(str, shape)) if shape else "no readable image found"
    ratio = summary["imbalance_ratio"]
    lines = [f"images: {summary['n']:,}", f"image size: {size}",
             f"imbalance ratio (largest/smallest class): {ratio:.1f}" if ratio else
             "imbalance ratio: n/a (no images)"]
    if summary["label_map"]:
        lines.append(f"label map: {summary['label_map']}")
    if summary["missing_files"]:
        lines.append(f"missing files: {summary['missing_files']:,} of {summary['n']:,} "
                     f"(first: {', '.join(summary['missing_examples'])})")
    console.print("\n".join(lines), highlight=False, markup=False)
    _require_images(summary)


def _require_images(summary: dict) -> None:
    """A dataset of which no image can be read is an error (exit 2), not a summary."""
    from galaxymorph.errors import DataError

    if summary["n"] and summary["image_shape"] is None:
        why = (f"all {summary['n']:,} image files are missing (first: "
               f"{', '.join(summary['missing_examples'])})"
               if summary["missing_files"] == summary["n"] else "none of the images probed could be read")
        raise DataError(f"no readable image: {why}", summary["spec"])


@data_app.command("show")
def show(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Image file to write (.png, .jpg, .pdf, .svg)."),
    plot: PlotKind = typer.Option(PlotKind.grid, "--plot", help="grid: sample images per class; "
                                  "counts: bar chart of class counts."),
    per_class: int = typer.Option(8, "--per-class", min=1, max=64, help="Images per class (grid)."),
    label_map: str | None = typer.Option(None, "--label-map", "-m", help=LABEL_MAP_HELP),
    crop: float = typer.Option(1.0, "--crop", help="Centre crop, fraction of the image side (grid)."),
    image_size: int = typer.Option(96, "--image-size", help="Thumbnail size in pixels (grid)."),
    seed: int = typer.Option(0, "--seed", help="Which random images the grid shows."),
    log: bool = typer.Option(False, "--log", help="Log-scale counts (counts)."),
) -> None:
    """Save a gallery of images per class, or a chart of class counts."""
    from galaxymorph.data import open_dataset
    from galaxymorph.data.explore import class_counts_plot, sample_grid

    dataset = open_dataset(spec, label_map=label_map)
    if plot is PlotKind.grid:
        path = sample_grid(dataset, out, per_class=per_class, seed=seed, image_size=image_size,
                           crop=crop)
    else:
        path = class_counts_plot(dataset, out, log=log)
    typer.echo(f"wrote {path}")


@data_app.command("check")
def check(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV of the flagged images "
                                    "(id, location, label, problem, detail)."),
    label_map: str | None = typer.Option(None, "--label-map", "-m", help=LABEL_MAP_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Find images to look at before training: unreadable, blank, or with no source at the
    centre (an archive's error page, sky only, a cutout off its target). Removes nothing."""
    from galaxymorph.data import open_dataset
    from galaxymorph.data.quality import check_images

    dataset = open_dataset(spec, label_map=label_map)
    report = check_images(dataset)
    if out is not None:
        report.write_csv(out)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    counts = report.counts()
    typer.echo(f"{report.n:,} images checked; {len(report.flagged):,} flagged "
               f"({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    for row in report.flagged[:20]:
        typer.echo(f"  {row['location']} [{row['label']}]: {row['problem']} ({row['detail']})")
    if len(report.flagged) > 20:
        typer.echo(f"  ... {len(report.flagged) - 20:,} more" + (f" in {out}" if out else
                                                                 " (--out CSV lists them all)"))
    if out is not None:
        typer.echo(f"wrote {out}")


@data_app.command("list")
def list_datasets(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """Datasets known by name, and whether they are in the cache folder."""
    from galaxymorph.data.registry import KNOWN
    from galaxymorph.data.specs import default_path

    rows = []
    for name, ds in KNOWN.items():
        path = default_path(name)
        part = path.with_name(path.name + ".part")
        rows.append({"name": name, "description": ds.description, "path": str(path),
                     "present": path.is_file(),
                     "partial_bytes": part.stat().st_size if part.is_file() else 0})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    table.add_column("in cache")
    for r in rows:
        if r["present"]:
            state = f"[green]yes[/] {escape(r['path'])}"
        elif r["partial_bytes"]:
            state = f"[yellow]partial[/] ({r['partial_bytes'] / 1e6:,.0f} MB; download resumes)"
        else:
            state = "no"
        table.add_row(r["name"], escape(r["description"]), state)
    console = Console(emoji=False)
    console.print(table)
    from galaxymorph import paths

    console.print(f"cache folder: {escape(str(paths.data_dir()))} (set GALAXYMORPH_HOME to move it); "
                  "fetch one with: galaxymorph data download NAME", highlight=False)


@data_app.command("download")
def download(
    name: str = typer.Argument(..., help="A known dataset (see `galaxymorph data list`) or an http(s) URL."),
    dest: Path | None = typer.Option(None, "--dest", help="File or folder to save to "
                                     "(default: $GALAXYMORPH_HOME/data/)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected SHA-256 (known datasets "
                                      "have one already)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Download a dataset, resuming a partial download and verifying its checksum."""
    from galaxymorph.data.download import download as fetch

    path = fetch(name, dest, sha256=sha256, progress=progress)
    typer.echo(str(path))
