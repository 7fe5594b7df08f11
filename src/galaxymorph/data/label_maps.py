"""Label maps: merge or drop a dataset's raw labels (e.g. GZ1's six leaves into GZ1-4).

A map file is YAML or JSON::

    name: gz1-4
    classes: [Elliptical, Spiral, Edge-on, Merger]
    map: {0: Elliptical, 1: Spiral, 2: Spiral, 3: Edge-on, 4: null, 5: Merger}

Keys are raw labels (integers) or raw class names; ``null`` drops the images; raw labels
not listed are an error, so that a map never silently swallows a class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxymorph.errors import ConfigError, DataError


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: list[str]
    mapping: dict[int | str, str | None] = field(default_factory=dict)

    def apply(self, raw_labels: np.ndarray, raw_names: list[str], where: str) -> np.ndarray:
        """New label per image, ``-1`` for dropped ones."""
        table = np.full(len(raw_names), -2, dtype=np.int64)
        for key, target in self.mapping.items():
            raw = key if isinstance(key, int) else _index_of(key, raw_names, self.name, where)
            if not 0 <= raw < len(raw_names):
                raise DataError(f"label map '{self.name}' names raw label {raw}, but the data has "
                                f"{len(raw_names)} classes", where)
            if target is None:
                table[raw] = -1
            elif target in self.classes:
                table[raw] = self.classes.index(target)
            else:
                raise ConfigError(f"label map '{self.name}': target '{target}' is not one of its "
                                  f"classes {self.classes}")
        out = table[raw_labels]
        unmapped = sorted(set(raw_labels[out == -2].tolist()))
        if unmapped:
            names = [raw_names[i] for i in unmapped]
            raise DataError(f"label map '{self.name}' does not say what to do with raw label(s) "
                            f"{unmapped} ({', '.join(names)}); map them to a class or to null",
                            where)
        return out


def _index_of(name: str, raw_names: list[str], map_name: str, where: str) -> int:
    from galaxymorph.data.classes import class_key

    if name in raw_names:
        return raw_names.index(name)
    if name.isdigit():
        return int(name)
    # "Round Smooth" names the catalog's "Round_Smooth": spelling is not a class.
    alike = [i for i, n in enumerate(raw_names) if class_key(n) == class_key(name)]
    if len(alike) == 1:
        return alike[0]
    raise DataError(f"label map '{map_name}' names class '{name}', which the data does not have "
                    f"(it has {raw_names})", where)


BUILTIN: dict[str, LabelMap] = {
    # Galaxy Zoo 1 leaves -> the standard four-class task (Dont_know dropped; both spiral
    # windings merged, which also makes mirror flips safe augmentations).
    "gz1-4": LabelMap(
        name="gz1-4",
        classes=["Elliptical", "Spiral", "Edge-on", "Merger"],
        mapping={0: "Elliptical", 1: "Spiral", 2: "Spiral", 3: "Edge-on", 4: None, 5: "Merger"},
    ),
    # Galaxy10 DECaLS in GZ1-4 terms: Disturbed (no GZ1 class) and Cigar Shaped Smooth (an
    # elliptical to GZ2's volunteers, often an edge-on disc to GZ1's) are dropped.
    "galaxy10-gz1-4": LabelMap(
        name="galaxy10-gz1-4",
        classes=["Elliptical", "Spiral", "Edge-on", "Merger"],
        mapping={"Disturbed": None, "Merging": "Merger", "Round Smooth": "Elliptical",
                 "In-between Round Smooth": "Elliptical", "Cigar Shaped Smooth": None,
                 "Barred Spiral": "Spiral", "Unbarred Tight Spiral": "Spiral",
                 "Unbarred Loose Spiral": "Spiral", "Edge-on without Bulge": "Edge-on",
                 "Edge-on with Bulge": "Edge-on"},
    ),
}


def load_label_map(name_or_path: str | Path | LabelMap | None) -> LabelMap | None:
    if name_or_path is None or isinstance(name_or_path, LabelMap):
        return name_or_path
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if not path.exists():
        raise ConfigError(f"unknown label map '{key}': not a built-in ({', '.join(BUILTIN)}) "
                          "and no such file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(f"cannot parse label map ({exc})", path) from exc
    if (not isinstance(raw, dict) or not isinstance(raw.get("classes"), list)
            or not isinstance(raw.get("map"), dict)):
        raise ConfigError("a label map needs 'classes' (list) and 'map' (raw -> class or null)", path)
    # YAML reads `classes: [1, 2]` and `map: {0: 1}` as integers: class names are text, so
    # both sides become strings (otherwise target 1 would not be found among '1', '2').
    classes = [_name(c, "class", path) for c in raw["classes"]]
    dups = sorted({c for c in classes if classes.count(c) > 1})
    if dups:
        raise ConfigError(f"label map lists class(es) {dups} more than once; each class once "
                          "(merge raw labels by mapping them to the same class)", path)
    mapping: dict[int | str, str | None] = {}
    for k, v in dict(raw["map"]).items():
        key: int | str = k if isinstance(k, int) and not isinstance(k, bool) else (
            int(k) if str(k).isdigit() else _name(k, "raw label", path))
        if key in mapping:
            raise ConfigError(f"label map names raw label {key!r} twice", path)
        target = None if v is None else _name(v, "target", path)
        if target is not None and target not in classes:
            raise ConfigError(f"label map: target '{target}' is not one of its classes {classes} "
                              f"(raw label {key!r})", path)
        mapping[key] = target
    return LabelMap(name=str(raw.get("name", path.stem)), classes=classes, mapping=mapping)


def _name(value: object, what: str, path: Path) -> str:
    """A class name from a map file: text or a number, never a list, a mapping or a bool."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise ConfigError(f"label map {what} {value!r} is not a name", path)
    return str(value)
