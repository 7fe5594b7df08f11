"""Class lists of the datasets galaxymorph knows by name, and the one rule that matches class
names between a dataset, a label map and a model (:func:`class_key`, :func:`match_classes`)."""

from __future__ import annotations

#: The one class of a catalog that holds vote fractions and no ``label`` column.
VOTES_ONLY = "(vote fractions only)"

#: Galaxy10 DECaLS (Leung & Bovy; Walmsley et al. 2022 volunteer votes), index = ``ans``.
GALAXY10_DECALS = [
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
]

#: The original Galaxy10 (SDSS, 69x69 px, Galaxy Zoo 2 votes), index = ``ans``.
GALAXY10_SDSS = [
    "Disk, Face-on, No Spiral",
    "Smooth, Completely round",
    "Smooth, in-between round",
    "Smooth, Cigar shaped",
    "Disk, Edge-on, Rounded Bulge",
    "Disk, Edge-on, Boxy Bulge",
    "Disk, Edge-on, No Bulge",
    "Disk, Face-on, Tight Spiral",
    "Disk, Face-on, Medium Spiral",
    "Disk, Face-on, Loose Spiral",
]


def class_key(name: str) -> str:
    """A class name compared without case, spaces, hyphens or underscores ("Edge_on" = "Edge-on")."""
    return str(name).lower().replace("-", "").replace("_", "").replace(" ", "")


def match_classes(names: list[str], used: list[int], targets: list[str]) -> tuple[list[int], list[str]]:
    """Index in ``targets`` of each class in ``names`` (matched by :func:`class_key`; -1 when it
    has no namesake), and the names of the ``used`` classes that have none."""
    where = {class_key(t): i for i, t in enumerate(targets)}
    table = [where.get(class_key(n), -1) for n in names]
    return table, [names[i] for i in used if table[i] < 0]


def chiral_pairs(class_names: list[str]) -> list[tuple[int, int]]:
    """Pairs of classes that a mirror flip turns into each other (clockwise <-> anticlockwise)."""
    norm = [class_key(n) for n in class_names]
    pairs = []
    for i, n in enumerate(norm):
        if "anticlockwise" in n or "counterclockwise" in n:
            twin = n.replace("anticlockwise", "clockwise").replace("counterclockwise", "clockwise")
            for j, m in enumerate(norm):
                if j != i and m == twin:
                    pairs.append((j, i))
    return sorted(set(pairs))


def match_class_names(names: list[str], reference: list[str]) -> list[int] | None:
    """Position in ``reference`` of each of ``names`` when both list the same classes (matched
    as :func:`match_classes` does; in any order), else ``None``."""
    keys = [class_key(n) for n in names]
    if len(set(keys)) != len(keys) or sorted(keys) != sorted(class_key(r) for r in reference):
        return None
    return match_classes(names, [], reference)[0]
