"""Would another false-alarm rate have caught an unseen family? Read a finished
``bench_detector.py`` work folder and re-threshold its verdict scores, post hoc.

For each held-out detector, the 900 (``--fa-real``) fresh real images are split in two at
random: the threshold is set at each rate on one half, the false alarms are counted on the
other, and the accuracy on an unseen family's test (its generated and real images) is read at
that threshold. A diagnostic of the operating point, not a way to choose it (the fresh real
images are the benchmark's own test images).

    python benchmarks/detector_operating_point.py WORK --family unseen_galsim_noisy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="bench_detector.py's --work folder")
    ap.add_argument("--family", default="unseen_galsim_noisy")
    ap.add_argument("--rates", default="0.01,0.015,0.02")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    print(f"{args.work}: {args.family}; threshold on half the fresh real images, false alarms "
          "on the other half")
    print("| detector | rate | threshold | accuracy | recall | false alarms (other half) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for fa_dir in sorted(args.work.glob("fa_holdout-*")):
        name = fa_dir.name.removeprefix("fa_")
        test = args.work / f"eval_{name}_{args.family}" / "predictions.csv"
        if not test.exists():
            continue
        real = pd.read_csv(fa_dir / "predictions.csv").query("label == 'real'")["synthetic_score"]
        scores = pd.read_csv(test)
        fake = scores.loc[scores["label"] != "real", "synthetic_score"].to_numpy()
        test_real = scores.loc[scores["label"] == "real", "synthetic_score"].to_numpy()
        order = np.random.default_rng(args.seed).permutation(len(real))
        fit, held = real.to_numpy()[order[: len(order) // 2]], real.to_numpy()[order[len(order) // 2:]]
        for rate in rates:
            cut = float(np.quantile(fit, 1 - rate))
            acc = ((fake >= cut).sum() + (test_real < cut).sum()) / (len(fake) + len(test_real))
            print(f"| {name} | {rate:.3f} | {cut:.4g} | {acc:.4f} | {(fake >= cut).mean():.4f} | "
                  f"{(held >= cut).mean():.4f} ({len(held)}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
