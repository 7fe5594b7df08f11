"""The decision-tree loss, and the temperature of a tree model's answers.

A network with a schema outputs one logit per answer; each question's answers get their own
softmax. The loss of an image is, summed over questions, the KL divergence from its target
fractions to the predicted ones, weighted by the share of volunteers who reached the question
(0 where its source does not answer it, so such a head learns nothing from that image). This
is the multinomial likelihood of the votes, per vote cast; Zoobot's Dirichlet-multinomial adds
a spread term that needs vote *counts*, which none of the tables here publish (the Kaggle and
GZ2 tables give fractions).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from galaxymorph.data.questions import Schema


def question_loss(logits: torch.Tensor, packed: torch.Tensor, schema: Schema,
                  label_smoothing: float = 0.0, reduction: str = "mean",
                  transitions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Weighted KL(target || predicted), summed over questions; ``packed`` = fractions (A) +
    question weights (Q) per image (:meth:`galaxymorph.data.questions.Targets.packed`).
    ``transitions``: per question, a ``(N, K, K)`` row-stochastic matrix per image: the
    target is then compared with ``p @ T`` (a noisy source's labelling convention, learned;
    the identity for the others)."""
    a = schema.n_answers
    fractions, weights = packed[:, :a].float(), packed[:, a:a + schema.n_questions].float()
    per_image = logits.new_zeros(len(logits), dtype=torch.float32)
    for qi, sl in enumerate(schema.slices):
        t = fractions[:, sl]
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / t.shape[1]
        if transitions is None:
            log_p = F.log_softmax(logits[:, sl].float(), dim=1)
        else:
            p = torch.softmax(logits[:, sl].float(), dim=1).unsqueeze(1)
            log_p = torch.bmm(p, transitions[qi]).squeeze(1).clamp_min(1e-8).log()
        kl = (t * (torch.log(t.clamp_min(1e-8)) - log_p)).sum(dim=1)
        per_image = per_image + weights[:, qi] * kl
    if reduction == "none":
        return per_image
    return per_image.mean()


def fit_question_temperatures(logits: np.ndarray, packed: np.ndarray, schema: Schema,
                              weights: np.ndarray | None = None, min_rows: int = 50) -> list[float]:
    """One temperature per question, each fitted on the validation images whose targets for
    it are vote fractions (not the one-hot answers a hard label implies): it is the
    volunteers' spread that fractions must match, and a hard label asks for certainty. A
    question with fewer than ``min_rows`` such images is fitted on every image that answers
    it. On v11's gz2_votes validation images (2-fold cross-fitted) the vote RMSE fell from
    0.107 with one temperature for all questions to 0.100."""
    a = schema.n_answers
    w = np.ones(len(logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    out = []
    for qi, sl in enumerate(schema.slices):
        answered = packed[:, a + qi] > 0
        soft = answered & (packed[:, sl].max(axis=1) < 0.999)
        rows = soft if soft.sum() >= min_rows else answered
        if not rows.any():
            out.append(1.0)
            continue
        q = schema.questions[qi]
        one = Schema(schema.name, (type(q)(q.name, q.answers),))  # the question alone
        sub = np.concatenate([packed[rows][:, sl], packed[rows][:, a + qi:a + qi + 1]], axis=1)
        out.append(fit_answer_temperature(logits[rows][:, sl], sub, one, w[rows]))
    return out


def fit_answer_temperature(logits: np.ndarray, packed: np.ndarray, schema: Schema,
                           weights: np.ndarray | None = None, max_iter: int = 200) -> float:
    """One T > 0 for every question, minimising the (image-weighted) :func:`question_loss` of
    ``logits / T`` on validation images: temperature scaling (Guo et al. 2017) for vote
    fractions. The answers' ranking is unchanged."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(packed, dtype=torch.float64)
    w = torch.ones(len(z), dtype=torch.float64) if weights is None else torch.as_tensor(
        weights, dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (question_loss(z / log_t.exp(), y, schema, reduction="none").double() * w).sum() / w.sum()
        loss.backward()
        return loss

    if len(z):
        opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 0.05 < t < 20 else 1.0


def class_log_score(logits: torch.Tensor, schema: Schema, taxonomy, k: int) -> torch.Tensor:
    """``(N,)`` log of class ``k``'s score in ``taxonomy`` (before normalisation and adapter),
    differentiable in the logits: what Grad-CAM explains for a tree model's class."""
    probs = {}
    for q, sl in zip(schema.questions, schema.slices, strict=True):
        p = torch.softmax(logits[:, sl], dim=1)
        for j, a in enumerate(q.answers):
            probs[(q.name, a)] = p[:, j]

    def path_score(c: int) -> torch.Tensor:
        s = logits.new_ones(len(logits))
        for qa in taxonomy.paths[c]:
            s = s * probs[tuple(qa)]
        return s

    score = path_score(k)
    if taxonomy.classes[k] not in taxonomy.overrides and taxonomy.overrides:
        rest = 1 - sum(path_score(taxonomy.classes.index(o)) for o in taxonomy.overrides)
        score = score * rest.clamp_min(0)
    return torch.log(score.clamp_min(1e-12))
