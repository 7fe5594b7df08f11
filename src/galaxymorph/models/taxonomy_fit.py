"""Fitting a tree model's taxonomies on validation images: adapters, conventions, abstention.

Per taxonomy (:data:`galaxymorph.data.taxonomies.TAXONOMIES`) an adapter, a multinomial
logistic regression on the log class scores fitted on the validation images that have a class
in it, kept only when 5-fold cross-validation on those images says it beats the scores as they
are. Sources marked noisy (``noisy_label_sources``, e.g. GZ1) are left out of it and get their
own adapter, their *convention* (``predict --convention gz1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from galaxymorph.data.questions import Schema
from galaxymorph.data.taxonomies import Taxonomy, labels_in


def taxonomy_probabilities(entry: dict[str, Any], schema: Schema, answers: np.ndarray,
                           adapter: dict | str | None = "own") -> np.ndarray:
    """Class probabilities in a card's taxonomy ``entry``, through its own adapter (or the
    ``adapter`` given; None: the scores as they are)."""
    from galaxymorph.models.calibration import apply_convention_map

    scores = Taxonomy.from_dict(entry).scores(answers, schema)
    adapter = entry.get("adapter") if adapter == "own" else adapter
    if not adapter:
        return scores
    return apply_convention_map(scores, np.asarray(adapter["weight"]), np.asarray(adapter["bias"]))


def fit_taxonomy(tax: Taxonomy, schema: Schema, answers: np.ndarray, class_names: list[str],
                 labels: np.ndarray, origin: np.ndarray, specs: list[str],
                 noisy: set[int], coverage: float = 0.9) -> dict[str, Any]:
    """A card's taxonomy entry: its definition, adapter, conventions and abstention rule,
    fitted on validation images (``answers``, their data ``labels`` and source ``origin``)."""
    from galaxymorph.models.calibration import abstention_rule, fit_convention_map, source_balance

    k = len(tax.classes)
    entry = tax.to_dict()
    y = labels_in(tax, class_names, labels)
    scores = tax.scores(answers, schema)
    clean = (y >= 0) & ~np.isin(origin, sorted(noisy))
    adapter, fitted = choose_adapter(scores[clean], y[clean], k, source_balance(origin[clean]))
    entry["adapter"] = adapter
    entry["fitted_on"] = fitted
    probs = taxonomy_probabilities(entry, schema, answers[clean])
    entry["abstention"] = abstention_rule(probs, y[clean], coverage) if clean.sum() >= 20 else {}
    direct = labels_in(tax, class_names, labels, derived=False)
    conventions = {}
    for g in sorted(noisy):
        sel = (origin == g) & (direct >= 0)
        if sel.any() and len(set(direct[sel].tolist())) == k:
            conventions[specs[g]] = fit_convention_map(scores[sel], direct[sel], k) | {
                "fitted_on": f"validation fold of {specs[g]}"}
    entry["conventions"] = conventions
    return entry


def choose_adapter(scores: np.ndarray, y: np.ndarray, k: int,
                   weights: np.ndarray | None = None) -> tuple[dict | None, dict[str, Any]]:
    """The adapter fitted on these images when 5-fold cross-validation gives it a lower
    (weighted) log-loss than the scores as they are; else None. Needs 5 images of each class."""
    from sklearn.model_selection import StratifiedKFold

    from galaxymorph.models.calibration import apply_convention_map, fit_convention_map

    counts = np.bincount(y, minlength=k) if len(y) else np.zeros(k, dtype=int)
    record: dict[str, Any] = {"images": len(y), "per_class": counts.tolist()}
    if len(y) == 0 or counts.min() < 5:
        return None, record | {"adapter": "none: fewer than 5 validation images of some class"}
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)

    def nll(p: np.ndarray, idx: np.ndarray) -> float:
        return float(-(w[idx] * np.log(np.clip(p[np.arange(len(idx)), y[idx]], 1e-12, 1))).sum())

    plain = fitted = 0.0
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(scores, y):
        m = fit_convention_map(scores[train], y[train], k, weights=w[train])
        fitted += nll(apply_convention_map(scores[test], np.asarray(m["weight"]),
                                           np.asarray(m["bias"])), test)
        plain += nll(scores[test], test)
    record |= {"cv_log_loss_scores": plain / w.sum(), "cv_log_loss_adapter": fitted / w.sum()}
    if fitted >= plain:
        return None, record | {"adapter": "none: cross-validation prefers the scores as they are"}
    m = fit_convention_map(scores, y, k, weights=w)
    return {"weight": m["weight"], "bias": m["bias"]}, record | {"adapter": "fitted"}
