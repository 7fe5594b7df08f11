"""What a labelled input already knows about each image, carried into predict's output.

A catalog row or a Galaxy10 h5 row comes with its true label and metadata (a catalog's extra
columns such as ra, dec, redshift or vote fractions; the h5 datasets ra/dec/redshift/pxscale).
Predict keeps them beside the prediction, so nobody has to parse ``path#row`` to join them back.

The columns are fixed from the inputs before the first row is written, so one run (and a
``--resume`` of it with the same inputs) has one schema; plain files and folders have no such
columns, and their rows leave them empty in a run that mixes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from galaxymorph.inference.sources import InputPlan, Item

#: The source's own label and class name (in the source's classes, which may differ from the
#: model's: GZ1's ``Spiral_Clockwise`` against a GZ1-4 model's ``Spiral``).
TRUE_LABEL, TRUE_LABEL_NAME = "true_label", "true_label_name"
#: Prefix of a metadata column whose name is already a prediction column (``probability``).
CLASH_PREFIX = "meta_"

#: Value kinds, for typed outputs (Parquet): what a writer needs to know of a column.
KINDS = ("int", "float", "bool", "str")


@dataclass
class _Table:
    labels: np.ndarray
    class_names: list[str]
    columns: dict[str, np.ndarray]  # output column -> values, row-aligned with the source


@dataclass
class SourceColumns:
    """The source columns of one run: ``names`` in output order, ``kinds`` per name."""

    names: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    _tables: dict[int, _Table] = field(default_factory=dict)
    #: the names of the source's label and class-name columns
    label_columns: tuple[str, str] = (TRUE_LABEL, TRUE_LABEL_NAME)

    @classmethod
    def of(cls, plan: InputPlan, taken: list[str],
           label_columns: tuple[str, str] = (TRUE_LABEL, TRUE_LABEL_NAME)) -> SourceColumns:
        """The columns ``plan``'s dataset sources bring; ``taken``: the prediction's columns;
        ``label_columns``: what the source's label and class name are called (``label`` and
        ``label_name`` in an output that has no predicted label of its own)."""
        out = cls(label_columns=tuple(label_columns))
        if not plan.sources:
            return out
        reserved = set(taken)
        out._add(label_columns[0], "int")
        out._add(label_columns[1], "str")
        reserved |= set(label_columns)
        for k, source in enumerate(plan.sources):
            columns: dict[str, np.ndarray] = {}
            meta = source.metadata
            for name in ([] if meta is None else list(meta.columns)):
                values = meta[name].to_numpy()
                column = str(name)
                if column in reserved:
                    column = CLASH_PREFIX + column
                out._add(column, _kind(values))
                columns[column] = values
            out._tables[k] = _Table(np.asarray(source.labels), list(source.class_names), columns)
        return out

    def _add(self, name: str, kind: str) -> None:
        if name not in self.kinds:
            self.names.append(name)
            self.kinds[name] = kind
        elif self.kinds[name] != kind:  # the same column, typed differently by two sources
            both = {self.kinds[name], kind}
            self.kinds[name] = "float" if both <= {"int", "float", "bool"} else "str"

    def values(self, item: Item) -> dict[str, Any]:
        """The source columns of ``item`` (empty for a plain file: its row leaves them blank)."""
        table = self._tables.get(item.source) if item.source is not None else None
        if table is None:
            return {}
        label = int(table.labels[item.index])
        row: dict[str, Any] = {self.label_columns[0]: label,
                               self.label_columns[1]: table.class_names[label]}
        for name, values in table.columns.items():
            row[name] = _plain(values[item.index], self.kinds[name])
        return row

    def fill(self, rows: list[dict[str, Any]], items: list[Item]) -> list[dict[str, Any]]:
        """Add each item's source columns to its output row (rows and items in one order)."""
        if self.names:
            for row, item in zip(rows, items, strict=True):
                row.update(self.values(item))
        return rows


def _kind(values: np.ndarray) -> str:
    k = values.dtype.kind
    if k in "iu":
        return "int"
    if k == "f":
        return "float"
    if k == "b":
        return "bool"
    return "str"


def _plain(value: Any, kind: str) -> Any:
    """A numpy scalar as a plain Python value of the column's kind (JSON and CSV write those);
    a missing value as None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "str":
        return str(value)
    if kind == "float":
        value = float(value)
        return None if np.isnan(value) else value
    return value
