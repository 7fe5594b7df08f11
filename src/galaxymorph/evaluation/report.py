"""Markdown report of an evaluation: headline metrics, per-class table, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaxymorph.io_utils import write_text


def metrics_markdown(metrics: dict[str, Any]) -> str:
    ci = metrics.get("ci95") or {}
    head = ["| metric | value | 95% interval (bootstrap) |", "| --- | --- | --- |"]
    for key in ("n", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted", "average_precision_macro", "ece"):
        if key in metrics:
            v = metrics[key]
            value = f"{v:.4f}" if isinstance(v, float) else str(v)
            head.append(f"| {key} | {value} | {_interval(ci.get(key))} |")
    per_class_ci = ci.get("per_class_f1", {})
    rows = ["| class | precision | recall | F1 | F1 95% interval | average precision | ROC AUC | support |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in metrics.get("per_class", {}).items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                    f"{_interval(per_class_ci.get(name))} | {_score(m.get('average_precision'))} | "
                    f"{_score(m.get('roc_auc'))} | {m['support']} |")
    return "\n".join(head) + "\n\n" + "\n".join(rows) + "\n"


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _interval(pair: list[float] | None) -> str:
    return f"{pair[0]:.3f} to {pair[1]:.3f}" if pair else ""


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
