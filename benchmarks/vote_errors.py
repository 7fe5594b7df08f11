"""Where two tree models' vote-fraction error sits, on their validation fold of gz2_votes.

Prints the 17-column RMSE of each model and of the average of their answers (does an ensemble
help?), then the second model's RMSE per column beside the column's spread (the RMSE of
predicting its mean). Validation fold only: a tool for choosing a recipe, not a test figure.

    python benchmarks/vote_errors.py runs/v11c runs/v12c
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_generalisation as bench  # a sibling script, not a package


def main(argv: list[str] | None = None) -> int:
    from galaxymorph.data.dataset import GalaxyDataset
    from galaxymorph.data.questions import find_vote_columns, in_table_weighting
    from galaxymorph.data.specs import open_source
    from galaxymorph.evaluation.metrics import vote_rmse
    from galaxymorph.models.loading import load_classifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    args = ap.parse_args(argv)
    spec = f"catalog:{bench.shared_root()}/gz2_votes/votes.csv"
    src = open_source(spec)
    found = find_vote_columns(src.metadata.columns)
    every = GalaxyDataset(src, np.arange(len(src)), src.labels, src.class_names, spec)
    scored = []
    for ref in (args.first, args.second):
        held = bench.test_fold(every, ref, "val")
        clf = load_classifier(ref)
        s = bench.Scored(clf, held, True)
        scored.append((held.indices[s.positions], s.answers, clf.schema))
    (ids, first, schema), (ids2, second, _) = scored
    if not np.array_equal(ids, ids2):
        raise SystemExit("the two models have different validation folds")
    table = src.metadata.iloc[ids].reset_index(drop=True)
    print(f"gz2_votes validation images: {len(table)}, columns: {len(found.columns)}")
    for name, answers in ((args.first, first), (args.second, second), ("average", (first + second) / 2)):
        print(f"{name}: RMSE {vote_rmse(in_table_weighting(answers, found, schema), table)['rmse']:.4f}")
    pred = in_table_weighting(second, found, schema)
    rows = []
    for c in found.columns:
        y = table[c].to_numpy(float)
        rows.append((c, np.sqrt(np.mean((np.asarray(pred[c], float) - y) ** 2)), y.std()))
    print(f"\n{args.second} per column | RMSE | spread (RMSE of the mean)")
    for c, err, spread in sorted(rows, key=lambda r: -r[1]):
        print(f"{c} | {err:.3f} | {spread:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
