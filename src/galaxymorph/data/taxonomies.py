"""Taxonomies cut from the decision tree: GZ1's four classes, GZ2's eight, Galaxy10 DECaLS's ten.

A taxonomy names its classes and, for each, the path of answers that leads to it. A class's
score is the product of the conditional answer probabilities along its path (the share of
volunteers who would have followed it); the *override* classes (odd features: mergers,
irregulars) take precedence, so every other class is scaled by what they leave. Scores are
then normalised over the taxonomy's classes. A model card stores its taxonomies as data
(:meth:`Taxonomy.to_dict`), with the small adapter fitted on validation images beside each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from galaxymorph.data.classes import class_key
from galaxymorph.data.questions import Schema, implied_answers

Path_ = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Taxonomy:
    name: str
    classes: tuple[str, ...]
    paths: tuple[Path_, ...]  # one per class
    overrides: tuple[str, ...] = ()
    #: class -> the finer classes of its source catalog that it merges (the questions here
    #: cannot tell them apart)
    merges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        problem = _taxonomy_problem(self)
        if problem:
            raise ValueError(f"taxonomy {self.name!r}: {problem}")

    def check(self, schema: Schema) -> None:
        """Every answer on every path must be one of ``schema``'s (``ValueError`` if not)."""
        for c, path in zip(self.classes, self.paths, strict=True):
            for q, a in path:
                try:
                    schema.answer_index(q, a)
                except KeyError as exc:
                    raise ValueError(f"taxonomy {self.name!r}, class {c!r}: {exc.args[0]}") from None

    def scores(self, probs: np.ndarray, schema: Schema) -> np.ndarray:
        """Class probabilities ``(N, K)`` from conditional answer probabilities ``(N, A)``."""
        probs = np.asarray(probs, dtype=np.float64)
        raw = np.ones((len(probs), len(self.classes)))
        for k, path in enumerate(self.paths):
            for q, a in path:
                raw[:, k] *= probs[:, schema.answer_index(q, a)]
        over = [self.classes.index(c) for c in self.overrides]
        if over:
            rest = np.clip(1.0 - raw[:, over].sum(axis=1), 0.0, 1.0)
            others = [k for k in range(len(self.classes)) if k not in over]
            raw[:, others] *= rest[:, None]
        total = raw.sum(axis=1, keepdims=True)
        return np.where(total > 0, raw / np.maximum(total, 1e-12), 1.0 / len(self.classes))

    def index_of(self, name: str) -> int | None:
        """The class a data class ``name`` falls in: a namesake, or the class merging it."""
        key = class_key(name)
        for k, c in enumerate(self.classes):
            if class_key(c) == key or key in {class_key(m) for m in self.merges.get(c, ())}:
                return k
        return None

    def table_for(self, names: Sequence[str]) -> list[int] | None:
        """Class index of each data class in ``names`` (-1: none), or None when no data class
        falls in this taxonomy."""
        table = [self.index_of(n) for n in names]
        if all(t is None for t in table):
            return None
        return [-1 if t is None else t for t in table]

    def from_answers(self, name: str) -> int | None:
        """The class of this taxonomy that a label of another taxonomy (``name``) implies, from
        the answers it implies; None when they do not decide it (an "Irregular" says nothing of
        "Elliptical" vs "Spiral"). An override class wins when its path is implied; another
        class when its path is, and no override is implied."""
        implied = implied_answers(name)
        if implied is None:
            return None
        said = dict(implied)

        def state(path: Path_) -> str:
            if any(q in said and said[q] != a for q, a in path):
                return "no"
            return "yes" if all(said.get(q) == a for q, a in path) else "unknown"

        states = [state(p) for p in self.paths]
        over = [k for k, c in enumerate(self.classes) if c in self.overrides]
        hits = [k for k in over if states[k] == "yes"]
        if not hits:
            hits = [k for k, s in enumerate(states) if s == "yes" and k not in over]
        return hits[0] if len(hits) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes),
                "paths": {c: [list(qa) for qa in p] for c, p in zip(self.classes, self.paths, strict=True)},
                "overrides": list(self.overrides),
                "merges": {c: list(m) for c, m in self.merges.items()},
                "description": self.description}

    @classmethod
    def from_dict(cls, raw: Any) -> Taxonomy:
        """A taxonomy from a model card, checked (``ValueError`` saying what is wrong)."""
        if not isinstance(raw, dict):
            raise ValueError("a taxonomy must be an object")
        name, classes, paths = raw.get("name"), raw.get("classes"), raw.get("paths")
        if not isinstance(name, str) or not name:
            raise ValueError("a taxonomy needs a name")
        if (not isinstance(classes, list) or len(classes) < 2
                or not all(isinstance(c, str) and c for c in classes)):
            raise ValueError(f"taxonomy {name!r}: classes must be a list of at least 2 names")
        if not isinstance(paths, dict) or set(paths) != set(classes):
            raise ValueError(f"taxonomy {name!r}: paths must give one path per class")
        parsed = []
        for c in classes:
            p = paths[c]
            if (not isinstance(p, list) or not p or not all(
                    isinstance(qa, list) and len(qa) == 2 and all(isinstance(x, str) for x in qa)
                    for qa in p)):
                raise ValueError(f"taxonomy {name!r}, class {c!r}: a path is a list of "
                                 "[question, answer] pairs")
            parsed.append(tuple(tuple(qa) for qa in p))
        overrides, merges = raw.get("overrides", []), raw.get("merges", {})
        if not isinstance(overrides, list) or not all(o in classes for o in overrides):
            raise ValueError(f"taxonomy {name!r}: overrides must be classes of it")
        if (not isinstance(merges, dict) or not all(
                k in classes and isinstance(v, list) and all(isinstance(x, str) for x in v)
                for k, v in merges.items())):
            raise ValueError(f"taxonomy {name!r}: merges must map its classes to lists of names")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"taxonomy {name!r}: description must be text")
        return cls(name, tuple(classes), tuple(parsed), tuple(overrides),
                   {k: tuple(v) for k, v in merges.items()}, description)


def _taxonomy_problem(t: Taxonomy) -> str | None:
    if len(t.classes) != len(t.paths):
        return "one path per class"
    keys = [class_key(c) for c in t.classes]
    if len(set(keys)) != len(keys):
        return "class names repeat"
    if not set(t.overrides) <= set(t.classes) or not set(t.merges) <= set(t.classes):
        return "overrides and merges must name its classes"
    return None


_S = ("smooth-or-featured", "smooth")
_F = ("smooth-or-featured", "featured-or-disk")
_EDGE = ("disk-edge-on", "yes")
_FACE = ("disk-edge-on", "no")
_ODD = ("something-odd", "yes")

GZ1_4 = Taxonomy(
    "gz1-4", ("Elliptical", "Spiral", "Edge-on", "Merger"),
    ((_S,), (_F, _FACE), (_F, _EDGE), (_ODD, ("odd-feature", "merger"))),
    overrides=("Merger",),
    description="Galaxy Zoo 1's four classes: smooth, face-on disc, edge-on disc, merger",
)
GZ2_8 = Taxonomy(
    "gz2-8", ("Round_elliptical", "In-between_elliptical", "Cigar_elliptical", "Edge-on",
              "Barred_spiral", "Unbarred_spiral", "Irregular", "Merger"),
    ((_S, ("how-rounded", "round")), (_S, ("how-rounded", "in-between")),
     (_S, ("how-rounded", "cigar-shaped")), (_F, _EDGE), (_F, _FACE, ("bar", "yes")),
     (_F, _FACE, ("bar", "no")), (_ODD, ("odd-feature", "irregular")),
     (_ODD, ("odd-feature", "merger"))),
    overrides=("Irregular", "Merger"),
    description="Galaxy Zoo 2's eight classes of Hart et al. 2016 / Lin et al. 2021 (gz2_hart8)",
)
GALAXY10 = Taxonomy(
    "galaxy10", ("Disturbed", "Merging", "Round Smooth", "In-between Round Smooth",
                 "Cigar Shaped Smooth", "Barred Spiral", "Unbarred Spiral", "Edge-on"),
    ((_ODD, ("odd-feature", "disturbed")), (_ODD, ("odd-feature", "merger")),
     (_S, ("how-rounded", "round")), (_S, ("how-rounded", "in-between")),
     (_S, ("how-rounded", "cigar-shaped")), (_F, _FACE, ("bar", "yes")),
     (_F, _FACE, ("bar", "no")), (_F, _EDGE)),
    overrides=("Disturbed", "Merging"),
    merges={"Unbarred Spiral": ("Unbarred Tight Spiral", "Unbarred Loose Spiral"),
            "Edge-on": ("Edge-on without Bulge", "Edge-on with Bulge")},
    description="Galaxy10 DECaLS's classes, as far as these questions tell them apart: arm "
                "winding (tight/loose) and bulge shape are not among them, so Unbarred Tight and "
                "Loose Spiral are one class, and so are both edge-on classes",
)

TAXONOMIES: dict[str, Taxonomy] = {t.name: t for t in (GZ1_4, GZ2_8, GALAXY10)}


def find_taxonomy(names: Sequence[str], used: Sequence[int],
                  taxonomies: Sequence[Taxonomy]) -> tuple[Taxonomy, list[int]] | None:
    """The first of ``taxonomies`` in which every used data class (``names[i]`` for ``i`` in
    ``used``) has its class, with the table (data class -> taxonomy class, -1 for unused ones
    without one); a taxonomy listing exactly the data's classes comes first. None: no fit."""
    keys = sorted(class_key(names[i]) for i in used)
    ordered = sorted(taxonomies, key=lambda t: sorted(class_key(c) for c in t.classes) != keys)
    for t in ordered:
        table = t.table_for(names)
        if table is not None and all(table[i] >= 0 for i in used):
            return t, table
    return None


def labels_in(taxonomy: Taxonomy, names: Sequence[str], labels: np.ndarray,
              derived: bool = True) -> np.ndarray:
    """Each image's class in ``taxonomy`` (-1: none): its data class's namesake or merging class,
    else (``derived``) the class its implied answers decide (:meth:`Taxonomy.from_answers`)."""
    table = []
    for name in names:
        k = taxonomy.index_of(name)
        if k is None and derived:
            k = taxonomy.from_answers(name)
        table.append(-1 if k is None else k)
    labels = np.asarray(labels, dtype=np.int64)
    return np.asarray(table, dtype=np.int64)[labels] if len(labels) else labels
