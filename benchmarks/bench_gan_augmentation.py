"""Does adding GAN images of minority classes help? Same classifier, with and without
synthetic images in the training fold, over several seeds; per-class and macro F1 with their
spread, and the paired difference per seed so that a gain can be told from noise.

    .venv/bin/python benchmarks/bench_gan_augmentation.py --data ../shared/data/gz1 \
        --label-map gz1-4 --synthetic catalog:runs/gan/samples/labels.csv --ratio 0.3 \
        --seeds 0 1 2 --epochs 15 --out runs/gan_aug

The split is the same for every run (split seed 0); the seed changes initialisation,
augmentation and sampling order. Validation and test folds never contain synthetic images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/gz1")
    ap.add_argument("--label-map", default="gz1-4")
    ap.add_argument("--synthetic", required=True, nargs="+", help="catalog spec(s) of generated images")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="cnn4-wide")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--pretrained", action="store_true", help="start both arms from ImageNet weights")
    ap.add_argument("--imbalance", default="weighted-loss",
                    help="class-imbalance handling of both arms (see galmorph train --imbalance)")
    ap.add_argument("--focus", default="Merger", help="class whose F1 gain is the target")
    ap.add_argument("--out", type=Path, default=Path("runs/gan_aug"))
    args = ap.parse_args()

    import galmorph

    results: dict[str, list[dict]] = {"real only": [], "real + GAN": []}
    for seed in args.seeds:
        for arm, extra in (("real only", {}), ("real + GAN", {"synthetic": args.synthetic,
                                                              "synthetic_ratio": args.ratio})):
            run_dir = args.out / f"{'gan' if extra else 'real'}_seed{seed}"
            if not (run_dir / "metrics.json").exists():
                galmorph.train(data=args.data, label_map=args.label_map, model=args.model,
                               image_size=args.image_size, crop=args.crop, epochs=args.epochs,
                               imbalance=args.imbalance, pretrained=args.pretrained,
                               seed=seed, split_seed=0, progress=False, out=run_dir, **extra)
            results[arm].append(json.loads((run_dir / "metrics.json").read_text()))

    classes = list(results["real only"][0]["per_class"])
    added = [json.loads((args.out / f"gan_seed{s}" / "summary.json").read_text())["synthetic_images"]
             for s in args.seeds]
    print(f"\n{args.model}{' (ImageNet start)' if args.pretrained else ''} @ {args.image_size}px, "
          f"{args.epochs} epochs, {args.imbalance}, {len(args.seeds)} seeds, "
          f"synthetic ratio {args.ratio} ({added[0]} generated images added to the training fold)")
    print(f"{'class':<14}" + "".join(f"{arm:>22}" for arm in results) + f"{'paired gain':>22}")
    rows = {c: [[m["per_class"][c]["f1"] for m in results[a]] for a in results] for c in classes}
    rows["macro F1"] = [[m["f1_macro"] for m in results[a]] for a in results]
    rows["accuracy"] = [[m["accuracy"] for m in results[a]] for a in results]
    for name, (base, aug) in rows.items():
        diff = np.asarray(aug) - np.asarray(base)
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(f"{name:<14}" + "".join(f"{np.mean(v):>14.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
                                      for v in (base, aug))
              + f"{diff.mean():>+14.3f} ± {se:.3f}")
    gain = np.mean(rows[args.focus][1]) - np.mean(rows[args.focus][0])
    print(f"\n{args.focus} F1 gain: {gain:+.3f} (target +0.05); standard error of the paired gain "
          "shown above: a gain within ~2 standard errors of 0 is noise.")


if __name__ == "__main__":
    main()
