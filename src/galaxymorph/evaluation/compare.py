"""Comparison tables across runs (the seed's tables: accuracy, weighted P/R/F1, macro F1,
training time, epochs, parameters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from galaxymorph.errors import GalaxymorphError
from galaxymorph.io_utils import write_text

COLUMNS = ("model", "accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro",
           "train_time", "epochs", "parameters")


def collect(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError as exc:
        raise GalaxymorphError(f"not a finished run folder (missing {Path(exc.filename).name})", run_dir) from exc
    except ValueError as exc:
        raise GalaxymorphError(f"unreadable metrics ({exc})", run_dir) from exc
    label = summary.get("model", run_dir.name)
    if summary.get("pretrained"):
        label += f" (ImageNet, {summary.get('transfer', 'full')})"
    return {"run": run_dir.name, "model": label, **{k: metrics.get(k) for k in COLUMNS[1:6]},
            "train_time": summary.get("train_seconds"), "epochs": summary.get("epochs"),
            "parameters": summary.get("parameters")}


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| run | model | accuracy | weighted precision | weighted recall | weighted F1 | "
            "macro F1 | training time | epochs | parameters |")
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        nums = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else "-" for k in COLUMNS[1:6]]
        params = f"{r['parameters'] / 1e6:.2f} M" if r.get("parameters") else "-"
        lines.append(f"| {r['run']} | {r['model']} | " + " | ".join(nums) +
                     f" | {_fmt_time(r.get('train_time'))} | {r.get('epochs', '-')} | {params} |")
    return "\n".join(lines) + "\n"


def compare(run_dirs: list[str | Path], out: str | Path | None = None) -> str:
    rows = [collect(d) for d in run_dirs]
    text = comparison_markdown(rows)
    if out:
        write_text(out, text)
    return text
