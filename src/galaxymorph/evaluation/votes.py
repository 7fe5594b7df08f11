"""Scoring a decision-tree model's vote fractions against a table's (``vote_rmse``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from galaxymorph.data.classes import VOTES_ONLY
from galaxymorph.data.questions import Schema, find_vote_columns, in_table_weighting
from galaxymorph.evaluation.metrics import vote_rmse


@dataclass
class VoteScores:
    metrics: dict[str, Any]
    #: Whether the scored images also carry class labels (else only votes can be scored).
    has_classes: bool

    def markdown(self) -> str:
        m = self.metrics
        ci = m.get("ci95")
        interval = f" (95% interval {ci[0]:.4f} to {ci[1]:.4f})" if ci else ""
        rows = [f"RMSE {m['rmse']:.4f}{interval} over {len(m['columns'])} columns "
                f"({m['convention']} names, {m['weighting']} fractions), {m['n_images']} images.",
                "", "| column | RMSE |", "| --- | --- |"]
        rows += [f"| {c} | {v:.4f} |" for c, v in m["per_column"].items()]
        return "\n".join(rows)


def vote_scores(ds, positions: np.ndarray, answers: np.ndarray, schema: Schema) -> VoteScores | None:
    """``vote_rmse`` of the images ``positions`` of ``ds`` when its (single) source has vote
    columns, in the table's own weighting; None when it has none."""
    from galaxymorph.data.sources import ConcatSource

    meta = ds.source.metadata
    if meta is None or isinstance(ds.source, ConcatSource):
        return None  # several sources: each has its own table (a training run scores them)
    found = find_vote_columns(meta.columns, schema)
    if not found:
        return None
    rows = meta.iloc[ds.indices[positions]].reset_index(drop=True)
    metrics = vote_rmse(in_table_weighting(answers, found, schema), rows) | {
        "convention": found.convention,
        "weighting": "cumulative" if found.cumulative else "conditional"}
    used = {ds.class_names[int(k)] for k in np.asarray(ds.labels)[positions]}
    return VoteScores(metrics, has_classes=used != {VOTES_ONLY})
