"""``galaxymorph cache list|clear``: see and prune the decode cache and the shared ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
cache_app = typer.Typer(help="List and clear the decoded-image cache ($GALAXYMORPH_HOME/cache).",
                        no_args_is_help=True)
DIR_HELP = "Cache folder (default: $GALAXYMORPH_HOME/cache/decoded)."


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


@cache_app.command("list")
def list_cmd(folder: Path = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """One line per cache: key, size, images, preprocessing, dataset."""
    from rich.table import Table

    from galaxymorph.data.cache import decoded_root, list_caches
    from galaxymorph.models.engine import shared_cache_dir, shared_graphs

    graphs = shared_graphs()
    if graphs:
        console.print(f"{sum(p.suffix == '.onnx' for p in graphs)} ONNX engine graphs, "
                      f"{_size(sum(p.stat().st_size for p in graphs))} in {shared_cache_dir()} "
                      "(`cache clear --engines` removes them)")
    root = folder or decoded_root()
    entries = list_caches(root)
    if not entries:
        console.print(f"no decode caches in {root}")
        return
    table = Table(title=str(root))
    table.add_column("key", min_width=24, no_wrap=True)  # whole: `cache clear KEY` needs it
    for name in ("size", "images", "size/crop"):
        table.add_column(name, no_wrap=True)
    table.add_column("dataset", overflow="fold")
    for e in entries:
        pre = e.preprocessing
        table.add_row(e.key, _size(e.bytes), "unfinished" if e.images is None else str(e.images),
                      f"{pre.get('image_size', '?')} px / {pre.get('crop', '?')}", e.spec)
    console.print(table)
    console.print(f"{len(entries)} caches, {_size(sum(e.bytes for e in entries))} in all")


@cache_app.command("clear")
def clear_cmd(
    keys: list[str] = typer.Argument(None, help="Keys to delete (see `cache list`); default: all."),
    older_than: float = typer.Option(None, "--older-than", help="Only caches unused for this many days."),
    folder: Path = typer.Option(None, "--dir", help=DIR_HELP),
    engines: bool = typer.Option(False, "--engines",
                                 help="Remove the shared ONNX engine graphs instead (re-exported on first use)."),
) -> None:
    """Delete decode caches (rebuilt when next needed) and part files left by killed builds."""
    from galaxymorph.data.cache import clear_caches, decoded_root, list_caches
    from galaxymorph.errors import ConfigError

    if engines:
        from galaxymorph.models.engine import shared_cache_dir, shared_graphs

        graphs = shared_graphs()
        size = sum(p.stat().st_size for p in graphs)
        for p in graphs:
            p.unlink(missing_ok=True)
        console.print(f"removed {sum(p.suffix == '.onnx' for p in graphs)} engine graphs "
                      f"({_size(size)}) from {shared_cache_dir()}")
        return
    root = folder or decoded_root()
    if keys:
        unknown = sorted(set(keys) - {e.key for e in list_caches(root)})
        if unknown:
            raise ConfigError(f"no such cache key(s) {unknown}; see `galaxymorph cache list`", root)
    removed = clear_caches(root, keys=keys or None, older_than_days=older_than)
    console.print(f"removed {len(removed)} caches ({_size(sum(e.bytes for e in removed))}) from {root}")
