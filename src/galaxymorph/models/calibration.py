"""Temperature scaling (Guo et al. 2017): one scalar fitted on the validation fold's logits,
each source of a multi-source fold weighted equally (:func:`source_balance`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def source_balance(origin: np.ndarray) -> np.ndarray | None:
    """Per-image weights that give every source of a fold the same total weight (mean 1), or
    ``None`` for one source.

    A validation fold of 450 GZ1 images and 24 GZ2 ones would otherwise calibrate the model
    for GZ1 alone, and users bring images of neither.
    """
    origin = np.asarray(origin)
    kinds, inverse, counts = np.unique(origin, return_inverse=True, return_counts=True)
    if len(kinds) < 2:
        return None
    w = 1.0 / counts[inverse]
    return w * (len(origin) / w.sum())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, max_iter: int = 200,
                    weights: np.ndarray | None = None) -> float:
    """The T > 0 minimising the (``weights``-weighted) NLL of ``softmax(logits / T)``
    (accuracy is unchanged)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(y_true, dtype=torch.long)
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if w is not None and w.shape != y.shape:
        raise ValueError(f"need one weight per label ({len(w)} vs {len(y)})")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        nll = F.cross_entropy(z / log_t.exp(), y, reduction="none")
        loss = nll.mean() if w is None else (nll * w).sum() / w.sum()
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 0.05 < t < 20 else 1.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confidence_threshold(probs: np.ndarray, y_true: np.ndarray, coverage: float = 0.9) -> float:
    """The confidence below which a model abstains so that it answers ``coverage`` of these images.

    Fitted on the validation fold: the ``1 - coverage`` quantile of the top probability. With
    ``coverage=1`` nothing is rejected (threshold 0). ``y_true`` is taken for symmetry with
    :func:`fit_temperature` and to reject mismatched inputs; the rule itself needs no labels,
    so it cannot overfit them.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) != len(y_true) or len(probs) == 0:
        raise ValueError(f"need as many labels as probability rows ({len(y_true)} vs {len(probs)}), "
                         "and at least one")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if coverage >= 1:
        return 0.0
    return float(np.quantile(probs.max(axis=1), 1 - coverage, method="lower"))


def uncertain(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """True where the top probability is below ``threshold`` (the model abstains); all False
    when the model has no threshold."""
    conf = np.asarray(probs).max(axis=-1)
    if threshold is None:
        return np.zeros(conf.shape, dtype=bool)
    return conf < threshold


def abstention_rule(probs: np.ndarray, y_true: np.ndarray, coverage: float = 0.9) -> dict:
    """The model card's ``abstention`` entry: a :func:`confidence_threshold` fitted on these
    (validation) images, and what it gave there."""
    threshold = confidence_threshold(probs, y_true, coverage)
    keep = ~uncertain(probs, threshold)
    correct = np.asarray(probs).argmax(axis=1) == np.asarray(y_true)
    return {"threshold": threshold, "rule": "target coverage on the validation fold",
            "target_coverage": float(coverage), "val_images": len(y_true),
            "val_coverage": float(keep.mean()),
            "val_accuracy_answered": float(correct[keep].mean()) if keep.any() else None}


def fit_convention_map(probs: np.ndarray, y_true: np.ndarray, num_classes: int,
                       weights: np.ndarray | None = None) -> dict:
    """An affine map from calibrated log-probabilities to one labelling convention's classes
    (a multinomial logistic regression, sklearn's default L2 strength), fitted on that source's
    validation images: the model card's ``label_transitions[spec]["logit_map"]``.

    Why beside the learned transition matrix T: T was fitted through training at the
    network's pace and multiplies probabilities; re-fitted afterwards on held-out images of the
    source, this map reads its convention from the network's final answers. On the built-in
    model's GZ1 test fold (TTA) it gave 0.868 against p @ T's 0.840, fitted on the 562-image
    validation fold (an informal check).
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y_true, dtype=np.int64)
    missing = sorted(set(range(num_classes)) - set(y.tolist()))
    if missing:
        raise ValueError(f"the source's validation images lack class(es) {missing}; a "
                         "convention map needs every class")
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-9, 1.0))
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(z, y, sample_weight=weights)
    weight, bias = lr.coef_, lr.intercept_
    if num_classes == 2:  # sklearn's one row for p(class 1): the same softmax, halved each way
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.r_[-bias / 2, bias / 2]
    return {"weight": weight.tolist(), "bias": bias.tolist(), "n": len(y),
            "fitted_on": "validation fold of the source"}


def apply_convention_map(probs: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities in a convention's classes from calibrated ones (:func:`fit_convention_map`)."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-9, 1.0)) @ weight.T + bias
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
