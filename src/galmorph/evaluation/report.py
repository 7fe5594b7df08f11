"""Markdown report of an evaluation: headline metrics, per-class table, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galmorph.io_utils import write_text


def metrics_markdown(metrics: dict[str, Any]) -> str:
    head = ["| metric | value |", "| --- | --- |"]
    for key in ("n", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted", "ece"):
        if key in metrics:
            v = metrics[key]
            head.append(f"| {key} | {v:.4f} |" if isinstance(v, float) else f"| {key} | {v} |")
    rows = ["| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for name, m in metrics.get("per_class", {}).items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                    f"{m['support']} |")
    return "\n".join(head) + "\n\n" + "\n".join(rows) + "\n"


def write_report(path: str | Path, title: str, metrics: dict[str, Any],
                 sections: dict[str, str] | None = None,
                 figures: tuple[str, ...] = ("confusion_matrix.png", "curves.png")) -> Path:
    path = Path(path)
    parts = [f"# {title}\n", metrics_markdown(metrics)]
    for heading, body in (sections or {}).items():
        parts.append(f"## {heading}\n\n{body}\n")
    figs = [f for f in figures if (path.parent / f).exists()]
    if figs:
        parts.append("## Figures\n\n" + "\n".join(f"![{f}]({f})" for f in figs) + "\n")
    return write_text(path, "\n".join(parts))
