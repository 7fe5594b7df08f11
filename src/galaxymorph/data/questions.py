"""Galaxy Zoo's decision tree: questions, answers, and the targets a model learns from them.

A schema is a list of questions; every question but the first ones is reached through one
answer of an earlier question (its parent). A network with a schema has one output per answer
and a softmax per question, so it answers every question as the volunteers would, including
the ones a given image's volunteers never reached.

Training targets are *conditional* vote fractions (each question's answers sum to 1 among the
volunteers who answered it) with, per question, a weight: the share of volunteers who reached
it (Zoobot weights its loss the same way, through vote counts). Hard labels count as the
answers they imply, with weight 1, and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from galaxymorph.data.classes import class_key


@dataclass(frozen=True)
class Question:
    name: str
    answers: tuple[str, ...]
    #: ``(question, answer)`` through which volunteers reach this question; None: everyone.
    parent: tuple[str, str] | None = None


@dataclass(frozen=True)
class Schema:
    """An ordered decision tree. Outputs are laid out question after question, answer after
    answer (:attr:`answer_names`)."""

    name: str
    questions: tuple[Question, ...]

    def __post_init__(self) -> None:
        problem = _schema_problem(self)
        if problem:
            raise ValueError(f"schema {self.name!r}: {problem}")

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    @property
    def n_answers(self) -> int:
        return sum(len(q.answers) for q in self.questions)

    @property
    def answer_names(self) -> list[str]:
        """``question_answer`` for every output, e.g. ``smooth-or-featured_smooth``."""
        return [f"{q.name}_{a}" for q in self.questions for a in q.answers]

    @property
    def slices(self) -> list[slice]:
        out, start = [], 0
        for q in self.questions:
            out.append(slice(start, start + len(q.answers)))
            start += len(q.answers)
        return out

    def question_index(self, name: str) -> int:
        for i, q in enumerate(self.questions):
            if q.name == name:
                return i
        raise KeyError(f"schema {self.name!r} has no question {name!r}")

    def answer_index(self, question: str, answer: str) -> int:
        """Position of ``answer`` of ``question`` among all outputs."""
        qi = self.question_index(question)
        q = self.questions[qi]
        if answer not in q.answers:
            raise KeyError(f"question {question!r} has no answer {answer!r} (it has {q.answers})")
        return self.slices[qi].start + q.answers.index(answer)

    def question_of_answer(self) -> np.ndarray:
        """Question index of each output."""
        return np.concatenate([np.full(len(q.answers), i) for i, q in enumerate(self.questions)])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "questions": [{"name": q.name, "answers": list(q.answers),
                               "parent": list(q.parent) if q.parent else None}
                              for q in self.questions]}

    @classmethod
    def from_dict(cls, raw: Any) -> Schema:
        """A schema from a model card's JSON, every field checked (a card is untrusted input);
        raises ``ValueError`` saying what is wrong."""
        if not isinstance(raw, dict) or not isinstance(raw.get("questions"), list):
            raise ValueError("questions must be an object with a 'questions' list")
        name = raw.get("name", "")
        if not isinstance(name, str):
            raise ValueError("the schema's name must be text")
        questions = []
        for i, q in enumerate(raw["questions"]):
            if not isinstance(q, dict):
                raise ValueError(f"question {i} must be an object")
            qname, answers, parent = q.get("name"), q.get("answers"), q.get("parent")
            if not isinstance(qname, str) or not qname:
                raise ValueError(f"question {i} needs a name")
            if (not isinstance(answers, list) or len(answers) < 2
                    or not all(isinstance(a, str) and a for a in answers)):
                raise ValueError(f"question {qname!r} needs a list of at least 2 answer names")
            if parent is not None and (not isinstance(parent, list) or len(parent) != 2
                                       or not all(isinstance(p, str) for p in parent)):
                raise ValueError(f"question {qname!r}: parent must be [question, answer] or null")
            questions.append(Question(qname, tuple(answers), tuple(parent) if parent else None))
        return cls(name, tuple(questions))


def _schema_problem(schema: Schema) -> str | None:
    if not schema.questions:
        return "no questions"
    if schema.n_answers > 1000:
        return f"{schema.n_answers} answers (at most 1000)"
    seen: dict[str, Question] = {}
    for q in schema.questions:
        if q.name in seen:
            return f"question {q.name!r} is listed twice"
        if len(set(q.answers)) != len(q.answers):
            return f"question {q.name!r} repeats an answer"
        if q.parent is not None:
            pq, pa = q.parent
            if pq not in seen:  # parents come first: no cycles, one pass computes reach
                return f"question {q.name!r}: its parent question {pq!r} must come before it"
            if pa not in seen[pq].answers:
                return f"question {q.name!r}: {pq!r} has no answer {pa!r}"
        seen[q.name] = q
    return None


#: The Galaxy Zoo 2 questions that some source of the shared data answers (Willett et al. 2013,
#: decision tree tasks 1-4 and 6-8), in Zoobot's naming style.
GZ2 = Schema("gz2", (
    Question("smooth-or-featured", ("smooth", "featured-or-disk", "artifact")),
    Question("disk-edge-on", ("yes", "no"), ("smooth-or-featured", "featured-or-disk")),
    Question("bar", ("yes", "no"), ("disk-edge-on", "no")),
    Question("has-spiral-arms", ("yes", "no"), ("disk-edge-on", "no")),
    Question("something-odd", ("yes", "no")),
    Question("how-rounded", ("round", "in-between", "cigar-shaped"), ("smooth-or-featured", "smooth")),
    Question("odd-feature", ("ring", "lens-or-arc", "disturbed", "irregular", "other", "merger",
                             "dust-lane"), ("something-odd", "yes")),
))

SCHEMAS = {"gz2": GZ2}


def get_schema(name: str) -> Schema:
    from galaxymorph.errors import ConfigError

    if name not in SCHEMAS:
        raise ConfigError(f"unknown question schema '{name}'; built-in: {', '.join(SCHEMAS)}")
    return SCHEMAS[name]


# -- vote tables ------------------------------------------------------------------------------

#: The Kaggle Galaxy Challenge's columns (cumulative: each answer weighted by the share of all
#: volunteers who reached its question).
KAGGLE_COLUMNS: dict[str, tuple[str, str]] = {
    "Class1.1": ("smooth-or-featured", "smooth"),
    "Class1.2": ("smooth-or-featured", "featured-or-disk"),
    "Class1.3": ("smooth-or-featured", "artifact"),
    "Class2.1": ("disk-edge-on", "yes"), "Class2.2": ("disk-edge-on", "no"),
    "Class3.1": ("bar", "yes"), "Class3.2": ("bar", "no"),
    "Class4.1": ("has-spiral-arms", "yes"), "Class4.2": ("has-spiral-arms", "no"),
    "Class6.1": ("something-odd", "yes"), "Class6.2": ("something-odd", "no"),
    "Class7.1": ("how-rounded", "round"), "Class7.2": ("how-rounded", "in-between"),
    "Class7.3": ("how-rounded", "cigar-shaped"),
    "Class8.1": ("odd-feature", "ring"), "Class8.2": ("odd-feature", "lens-or-arc"),
    "Class8.3": ("odd-feature", "disturbed"), "Class8.4": ("odd-feature", "irregular"),
    "Class8.5": ("odd-feature", "other"), "Class8.6": ("odd-feature", "merger"),
    "Class8.7": ("odd-feature", "dust-lane"),
}

#: GZ2's table stems (Willett et al. 2013), conditional fractions; each stem comes with a
#: suffix, ``_debiased`` preferred over ``_weighted_fraction`` over ``_fraction``.
GZ2_STEMS: dict[str, tuple[str, str]] = {
    "t01_smooth_or_features_a01_smooth": ("smooth-or-featured", "smooth"),
    "t01_smooth_or_features_a02_features_or_disk": ("smooth-or-featured", "featured-or-disk"),
    "t01_smooth_or_features_a03_star_or_artifact": ("smooth-or-featured", "artifact"),
    "t02_edgeon_a04_yes": ("disk-edge-on", "yes"), "t02_edgeon_a05_no": ("disk-edge-on", "no"),
    "t03_bar_a06_bar": ("bar", "yes"), "t03_bar_a07_no_bar": ("bar", "no"),
    "t04_spiral_a08_spiral": ("has-spiral-arms", "yes"),
    "t04_spiral_a09_no_spiral": ("has-spiral-arms", "no"),
    "t06_odd_a14_yes": ("something-odd", "yes"), "t06_odd_a15_no": ("something-odd", "no"),
    "t07_rounded_a16_completely_round": ("how-rounded", "round"),
    "t07_rounded_a17_in_between": ("how-rounded", "in-between"),
    "t07_rounded_a18_cigar_shaped": ("how-rounded", "cigar-shaped"),
    "t08_odd_feature_a19_ring": ("odd-feature", "ring"),
    "t08_odd_feature_a20_lens_or_arc": ("odd-feature", "lens-or-arc"),
    "t08_odd_feature_a21_disturbed": ("odd-feature", "disturbed"),
    "t08_odd_feature_a22_irregular": ("odd-feature", "irregular"),
    "t08_odd_feature_a23_other": ("odd-feature", "other"),
    "t08_odd_feature_a24_merger": ("odd-feature", "merger"),
    "t08_odd_feature_a38_dust_lane": ("odd-feature", "dust-lane"),
}
GZ2_SUFFIXES = ("_debiased", "_weighted_fraction", "_fraction")
#: galaxymorph's own output columns (``predict`` writes them): conditional fractions.
VOTE_PREFIX = "vote_"


@dataclass(frozen=True)
class VoteColumns:
    """Which columns of a table hold which answers, and in which weighting."""

    columns: dict[str, tuple[str, str]]  # column -> (question, answer)
    cumulative: bool
    convention: str  # "kaggle", "gz2" or "galaxymorph"

    def __bool__(self) -> bool:
        return bool(self.columns)


def find_vote_columns(columns: Iterable[str], schema: Schema = GZ2) -> VoteColumns:
    """The vote-fraction columns among ``columns`` that answer questions of ``schema``: the
    Kaggle ``ClassN.M`` names, GZ2's ``tNN_..._debiased`` names or galaxymorph's ``vote_*``
    (the first convention found, in that order); empty when there are none."""
    names = [str(c) for c in columns]
    known = {(q.name, a) for q in schema.questions for a in q.answers}
    kaggle = {c: KAGGLE_COLUMNS[c] for c in names if c in KAGGLE_COLUMNS and KAGGLE_COLUMNS[c] in known}
    if kaggle:
        return VoteColumns(kaggle, cumulative=True, convention="kaggle")
    gz2: dict[str, tuple[str, str]] = {}
    present = set(names)
    for stem, qa in GZ2_STEMS.items():
        col = next((stem + s for s in GZ2_SUFFIXES if stem + s in present), None)
        if col is not None and qa in known:
            gz2[col] = qa
    if gz2:
        return VoteColumns(gz2, cumulative=False, convention="gz2")
    ours = {}
    for name in schema.answer_names:
        if VOTE_PREFIX + name in present:
            q, a = _split_answer_name(schema, name)
            ours[VOTE_PREFIX + name] = (q, a)
    return VoteColumns(ours, cumulative=False, convention="galaxymorph")


def _split_answer_name(schema: Schema, name: str) -> tuple[str, str]:
    for q in schema.questions:
        for a in q.answers:
            if f"{q.name}_{a}" == name:
                return q.name, a
    raise KeyError(name)


@dataclass
class Targets:
    """Per image: conditional answer fractions ``(N, A)`` and question weights ``(N, Q)``
    (0: the question says nothing about this image)."""

    fractions: np.ndarray
    weights: np.ndarray

    def packed(self) -> np.ndarray:
        """``(N, A + Q)`` float32, the layout the training loss reads."""
        return np.concatenate([self.fractions, self.weights], axis=1).astype(np.float32)

    @classmethod
    def empty(cls, n: int, schema: Schema) -> Targets:
        return cls(np.zeros((n, schema.n_answers)), np.zeros((n, schema.n_questions)))


def unpack(packed: np.ndarray, schema: Schema) -> Targets:
    return Targets(packed[:, :schema.n_answers], packed[:, schema.n_answers:])


def vote_targets(table: Mapping[str, Any], found: VoteColumns, schema: Schema, n: int,
                 where: str = "table") -> Targets:
    """Targets from the vote columns ``found`` of ``table`` (a DataFrame or column -> values).

    A question counts for an image when all its answers' columns are there, or all but one
    (the missing fraction is what is left of 1, or of the question's reach when cumulative).
    Fractions are made conditional and renormalised to sum 1 (debiased fractions need not);
    the weight is the share of volunteers who reached the question: the sum of its cumulative
    fractions, or the product of the conditional fractions along its path. Blank cells leave
    the question out for that image; values outside [0, 1] are an error naming the column.
    """
    from galaxymorph.errors import DataError

    out = Targets.empty(n, schema)
    raw: dict[tuple[str, str], np.ndarray] = {}
    for col, qa in found.columns.items():
        try:
            values = np.asarray(table[col], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DataError(f"vote column '{col}' must hold numbers ({exc})", where) from None
        if len(values) != n:
            raise DataError(f"vote column '{col}' has {len(values)} values for {n} rows", where)
        finite = values[np.isfinite(values)]
        if len(finite) and (finite.min() < -1e-3 or finite.max() > 1 + 1e-3):
            raise DataError(f"vote column '{col}' holds values outside [0, 1] (e.g. "
                            f"{finite[(finite < 0) | (finite > 1)][0]:g}): not vote fractions",
                            where)
        raw[qa] = np.clip(values, 0.0, 1.0)
    reach_cond = np.ones((n, schema.n_questions))  # conditional chain, for conditional tables
    covered = np.zeros((n, schema.n_questions), dtype=bool)
    for qi, q in enumerate(schema.questions):
        have = [a for a in q.answers if (q.name, a) in raw]
        if len(have) < len(q.answers) - 1:
            continue
        vals = np.full((n, len(q.answers)), np.nan)
        for k, a in enumerate(q.answers):
            if (q.name, a) in raw:
                vals[:, k] = raw[(q.name, a)]
        if found.cumulative:
            if len(have) == len(q.answers):
                reach = vals.sum(axis=1)
            else:  # the one missing answer: the parent's cumulative fraction minus the others
                parent = _parent_cumulative(q, raw, n)
                if parent is None:
                    continue
                reach = parent
            missing = np.isnan(vals)
            vals[missing] = 0.0
            if missing.any():
                rest = np.clip(reach - vals.sum(axis=1), 0.0, 1.0)
                vals[missing] = np.broadcast_to(rest[:, None], vals.shape)[missing]
            weight = reach
        else:
            if len(have) < len(q.answers):
                k = next(i for i, a in enumerate(q.answers) if (q.name, a) not in raw)
                others = np.delete(vals, k, axis=1)
                vals[:, k] = np.clip(1.0 - others.sum(axis=1), 0.0, 1.0)
            if q.parent is not None:
                pi = schema.question_index(q.parent[0])
                if not covered[:, pi].any():
                    continue  # reach unknown: say nothing rather than guess
                pa = schema.questions[pi].answers.index(q.parent[1])
                parent_frac = out.fractions[:, schema.slices[pi]][:, pa]
                reach_cond[:, qi] = reach_cond[:, pi] * np.where(covered[:, pi], parent_frac, np.nan)
            weight = reach_cond[:, qi]
        total = vals.sum(axis=1)
        ok = np.isfinite(total) & np.isfinite(weight) & (total > 0)
        vals = np.where(ok[:, None], vals / np.where(ok, total, 1.0)[:, None], 0.0)
        out.fractions[:, schema.slices[qi]] = vals
        out.weights[:, qi] = np.where(ok, np.clip(weight, 0.0, 1.0), 0.0)
        covered[:, qi] = ok
    return out


def _parent_cumulative(q: Question, raw: dict[tuple[str, str], np.ndarray], n: int) -> np.ndarray | None:
    if q.parent is None:
        return np.ones(n)
    return raw.get(tuple(q.parent))


# -- hard labels ------------------------------------------------------------------------------

_SMOOTH = ("smooth-or-featured", "smooth")
_FEATURED = ("smooth-or-featured", "featured-or-disk")
_EDGE_ON = ("disk-edge-on", "yes")
_FACE_ON = ("disk-edge-on", "no")
_ARMS = ("has-spiral-arms", "yes")
_ODD = ("something-odd", "yes")

#: The answers a hard label implies, by class name (compared as :func:`class_key` does). Only
#: what the class says: "Elliptical" says smooth, nothing about roundness or oddness.
IMPLIED: dict[str, tuple[tuple[str, str], ...]] = {
    # GZ1-4, GZ1's own leaves and the weak "Spiral" catalogs
    "Elliptical": (_SMOOTH,),
    "Spiral": (_FEATURED, _FACE_ON, _ARMS),
    "Spiral_Clockwise": (_FEATURED, _FACE_ON, _ARMS),
    "Spiral_AntiClockwise": (_FEATURED, _FACE_ON, _ARMS),
    "Edge-on": (_FEATURED, _EDGE_ON),
    "Merger": (_ODD, ("odd-feature", "merger")),
    # GZ2's eight classes (Hart et al. 2016 via Lin et al. 2021)
    "Round_elliptical": (_SMOOTH, ("how-rounded", "round")),
    "In-between_elliptical": (_SMOOTH, ("how-rounded", "in-between")),
    "Cigar_elliptical": (_SMOOTH, ("how-rounded", "cigar-shaped")),
    "Barred_spiral": (_FEATURED, _FACE_ON, ("bar", "yes"), _ARMS),
    "Unbarred_spiral": (_FEATURED, _FACE_ON, ("bar", "no"), _ARMS),
    "Irregular": (_ODD, ("odd-feature", "irregular")),
    # Galaxy10 DECaLS
    "Disturbed": (_ODD, ("odd-feature", "disturbed")),
    "Merging": (_ODD, ("odd-feature", "merger")),
    "Round Smooth": (_SMOOTH, ("how-rounded", "round")),
    "In-between Round Smooth": (_SMOOTH, ("how-rounded", "in-between")),
    "Cigar Shaped Smooth": (_SMOOTH, ("how-rounded", "cigar-shaped")),
    "Barred Spiral": (_FEATURED, _FACE_ON, ("bar", "yes"), _ARMS),
    "Unbarred Tight Spiral": (_FEATURED, _FACE_ON, ("bar", "no"), _ARMS),
    "Unbarred Loose Spiral": (_FEATURED, _FACE_ON, ("bar", "no"), _ARMS),
    "Edge-on without Bulge": (_FEATURED, _EDGE_ON),
    "Edge-on with Bulge": (_FEATURED, _EDGE_ON),
    # Galaxy Zoo DECaLS rings
    "ring": (_ODD, ("odd-feature", "ring")),
}
_IMPLIED_BY_KEY = {class_key(k): v for k, v in IMPLIED.items()}


def implied_answers(class_name: str) -> tuple[tuple[str, str], ...] | None:
    """The answers a class label implies (None: a class the decision tree cannot read)."""
    return _IMPLIED_BY_KEY.get(class_key(class_name))


def label_targets(labels: np.ndarray, class_names: list[str], schema: Schema,
                  where: str = "data") -> Targets:
    """One-hot answers, weight 1, for the questions each image's class implies."""
    from galaxymorph.errors import DataError

    unknown = [class_names[i] for i in sorted(set(np.asarray(labels).tolist()))
               if implied_answers(class_names[i]) is None]
    if unknown:
        raise DataError(f"class(es) {unknown} imply no answer of the {schema.name} questions; "
                        "map them with --label-map to classes it knows "
                        f"({', '.join(IMPLIED)}) or give vote-fraction columns", where)
    per_class = Targets.empty(len(class_names), schema)
    for c, name in enumerate(class_names):
        for q, a in implied_answers(name) or ():
            if q not in {x.name for x in schema.questions}:
                continue
            qi = schema.question_index(q)
            per_class.fractions[c, schema.answer_index(q, a)] = 1.0
            per_class.weights[c, qi] = 1.0
    labels = np.asarray(labels, dtype=np.int64)
    return Targets(per_class.fractions[labels], per_class.weights[labels])


def combine(labelled: Targets, votes: Targets, schema: Schema) -> Targets:
    """Votes where they answer a question (weight > 0), the label's implied answers elsewhere."""
    out = Targets(labelled.fractions.copy(), labelled.weights.copy())
    for qi, sl in enumerate(schema.slices):
        use = votes.weights[:, qi] > 0
        out.fractions[use, sl] = votes.fractions[use, sl]
        out.weights[use, qi] = votes.weights[use, qi]
    return out


# -- predictions ------------------------------------------------------------------------------

def answer_probabilities(logits: np.ndarray, schema: Schema,
                         temperature: float | Sequence[float] = 1.0) -> np.ndarray:
    """Conditional answer probabilities: a softmax per question over the network's outputs,
    over one temperature or one per question."""
    z = np.asarray(logits, dtype=np.float64)
    temps = [float(temperature)] * schema.n_questions if np.isscalar(temperature) else list(temperature)
    out = np.empty_like(z)
    for sl, t in zip(schema.slices, temps, strict=True):
        part = z[:, sl] / t
        part = part - part.max(axis=1, keepdims=True)
        e = np.exp(part)
        out[:, sl] = e / e.sum(axis=1, keepdims=True)
    return out


def reach(probs: np.ndarray, schema: Schema) -> np.ndarray:
    """``(N, Q)``: the predicted share of volunteers who reach each question (the product of
    the conditional answers along its path)."""
    out = np.ones((len(probs), schema.n_questions))
    for qi, q in enumerate(schema.questions):
        if q.parent is not None:
            pi = schema.question_index(q.parent[0])
            out[:, qi] = out[:, pi] * probs[:, schema.answer_index(*q.parent)]
    return out


def cumulative(probs: np.ndarray, schema: Schema) -> np.ndarray:
    """Answers weighted by their question's reach (the Kaggle challenge's weighting)."""
    return probs * reach(probs, schema)[:, schema.question_of_answer()]


def in_table_weighting(probs: np.ndarray, found: VoteColumns, schema: Schema) -> dict[str, np.ndarray]:
    """The predicted value of every column of ``found``, in that table's weighting."""
    values = cumulative(probs, schema) if found.cumulative else probs
    return {col: values[:, schema.answer_index(q, a)] for col, (q, a) in found.columns.items()}
