"""Does adding GAN images of minority classes help? Same classifier, with and without
synthetic images in the training fold, over several seeds; per-class and macro F1 with their
spread, and the paired difference per seed so that a gain can be told from noise.

    .venv/bin/python benchmarks/bench_gan_augmentation.py --data ../shared/data/gz1 \
        --label-map gz1-4 --synthetic catalog:runs/gan/samples/labels.csv --ratio 0.3 \
        --seeds 0 1 2 --epochs 15 --out runs/gan_aug

The split is the same for every run (split seed 0); the seed changes initialisation,
augmentation and sampling order. Validation and test folds never contain synthetic images.

A third arm, "real oversampled", adds the same number of images per class as the GAN arm but
as repeats of real training images of that class (the plain alternative to a GAN). It also
shifts the class-weighted loss exactly as the GAN arm does, so the GAN's images are credited
only with what they add beyond "more copies of the minority class". ``--no-control`` skips it.
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
                    help="class-imbalance handling of both arms (see galaxymorph train --imbalance)")
    ap.add_argument("--focus", default="Merger", help="class whose F1 gain is the target")
    ap.add_argument("--no-control", action="store_true", help="skip the real-oversampled arm")
    ap.add_argument("--out", type=Path, default=Path("runs/gan_aug"))
    args = ap.parse_args()

    import galaxymorph

    arms = {"real only": ("real", {}),
            "real + GAN": ("gan", {"synthetic": args.synthetic, "synthetic_ratio": args.ratio})}
    if not args.no_control:
        arms["real oversampled"] = ("oversampled", {})
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, (tag, extra) in arms.items():
            run_dir = args.out / f"{tag}_seed{seed}"
            if tag == "oversampled":
                extra = {"synthetic": [repeat_catalog(args, seed)], "synthetic_ratio": args.ratio}
            if not (run_dir / "metrics.json").exists():
                galaxymorph.train(data=args.data, label_map=args.label_map, model=args.model,
                               image_size=args.image_size, crop=args.crop, epochs=args.epochs,
                               imbalance=args.imbalance, pretrained=args.pretrained,
                               seed=seed, split_seed=0, progress=False, out=run_dir, **extra)
            results[arm].append(with_ranking(run_dir))

    classes = list(results["real only"][0]["per_class"])
    base = results.pop("real only")
    added = [json.loads((args.out / f"gan_seed{s}" / "summary.json").read_text())["synthetic_images"]
             for s in args.seeds]
    print(f"\n{args.model}{' (ImageNet start)' if args.pretrained else ''} @ {args.image_size}px, "
          f"{args.epochs} epochs, {args.imbalance}, {len(args.seeds)} seeds, "
          f"synthetic ratio {args.ratio} ({added[0]} generated images added to the training fold)")
    for arm, runs in results.items():
        print(f"\n{arm} vs real only (mean ± sd over seeds; paired gain ± its standard error)")
        print(f"{'class':<14}{'real only':>22}{arm:>22}{'paired gain':>22}")
        for name in [*classes, "macro F1", "accuracy", f"{args.focus} AP", "macro AP"]:
            before, after = (_scores(m, name) for m in (base, runs))
            diff = after - before
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            print(f"{name:<14}" + "".join(f"{v.mean():>14.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"
                                          for v in (before, after)) + f"{diff.mean():>+14.3f} ± {se:.3f}")
    gain = (_scores(results["real + GAN"], args.focus) - _scores(base, args.focus)).mean()
    print(f"\n{args.focus} F1 gain of the GAN arm: {gain:+.3f} (target +0.05). A gain within ~2 "
          "standard errors of 0 is noise. AP (average precision) does not depend on the decision "
          "threshold: a gain in F1 without one in AP came from predicting the class more or less "
          "often, not from telling its images apart better.")
    if "real oversampled" in results:
        edge = _scores(results["real + GAN"], args.focus) - _scores(results["real oversampled"], args.focus)
        se = edge.std(ddof=1) / np.sqrt(len(edge)) if len(edge) > 1 else float("nan")
        print(f"GAN vs repeating real {args.focus} images: {edge.mean():+.3f} ± {se:.3f}")


def _scores(metrics: list[dict], name: str) -> np.ndarray:
    key = {"macro F1": "f1_macro", "accuracy": "accuracy", "macro AP": "average_precision_macro"}.get(name)
    if key:
        return np.array([m[key] for m in metrics])
    if name.endswith(" AP"):
        return np.array([m["per_class"][name[:-3]]["average_precision"] for m in metrics])
    return np.array([m["per_class"][name]["f1"] for m in metrics])


def with_ranking(run_dir: Path) -> dict:
    """The run's test metrics; runs from before average precision was recorded are scored
    again on the same test fold (same model, temperature and TTA setting)."""
    import galaxymorph

    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "average_precision_macro" not in metrics:
        again = galaxymorph.evaluate(model=run_dir, split="test", tta=bool(metrics.get("tta")),
                                  out=run_dir / "evaluation")
        metrics["average_precision_macro"] = again["average_precision_macro"]
        for name, row in again["per_class"].items():
            metrics["per_class"][name].update({k: row[k] for k in ("average_precision", "roc_auc") if k in row})
    return metrics


def repeat_catalog(args: argparse.Namespace, seed: int) -> str:
    """A catalog of repeated real training images: per class, as many as the GAN arm adds
    (the same rule as ``galaxymorph train --synthetic``: up to ratio x the largest class)."""
    import pandas as pd

    from galaxymorph.data import open_dataset
    from galaxymorph.data.splits import Split

    real_dir = args.out / f"real_seed{seed}"
    train = open_dataset(args.data, args.label_map).select_ids(Split.load(real_dir / "split.json").fold("train"))
    counts = train.class_counts()
    target = round(args.ratio * counts.max())
    wanted = set()
    for spec in args.synthetic:
        wanted |= set(open_dataset(spec).class_names)
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(train.class_names):
        if name not in wanted:
            continue
        members = np.flatnonzero(train.labels == c)
        for i in rng.choice(members, size=max(0, target - int(counts[c])), replace=True):
            rows.append({"filename": str(Path(train.location(int(i))).resolve()), "label": c, "label_name": name})
    path = args.out / f"oversampled_seed{seed}.csv"
    pd.DataFrame(rows, columns=["filename", "label", "label_name"]).to_csv(path, index=False)
    return f"catalog:{path}"


if __name__ == "__main__":
    main()
