"""Does a model keep its answers when the same galaxies are imaged at another scale?

For every image of a catalog, the benchmark scores the model on the image as it is and on
the same image shrunk (padded with sky) or enlarged (cropped) by each ``--zoom`` factor
(:func:`galaxymorph.data.transforms.zoom_field`), and prints accuracy and macro F1 with 95%
bootstrap intervals, the paired accuracy change against zoom 1 (with its interval) and the
fraction of predictions that stay the same. Target (issue 14): |change| <= 0.03 at 0.7x and 1.4x.

    .venv/bin/python benchmarks/bench_framing.py --model default \\
        --data catalog:../shared/data/gz2_clean/dev.csv --zoom 0.7 --zoom 1.4
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default="catalog:../shared/data/gz2_clean/dev.csv")
    ap.add_argument("--label-map", default=None, help="default: the model card's")
    ap.add_argument("--zoom", type=float, action="append", default=None)
    ap.add_argument("--crop", type=float, default=None, help="fixed crop instead of the model's framing")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="default: the model card's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--frame-sides", action="store_true",
                    help="Only print the frame side (pixels) automatic framing cuts from each image, "
                         "against the network's input: what draft JPEG decoding at 1/2 would leave")
    args = ap.parse_args()
    import torch
    from sklearn.metrics import f1_score

    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.data.transforms import zoom_field
    from galaxymorph.models.loading import load_classifier

    torch.set_num_threads(args.threads)
    zooms = [1.0] + [z for z in (args.zoom or [0.7, 1.4]) if z != 1.0]
    clf = load_classifier(args.model).with_crop(args.crop)
    label_map = args.label_map if args.label_map is not None else clf.card.training_data.get("label_map")
    ds = open_dataset(args.data, label_map)
    if ds.class_names != clf.class_names:
        raise SystemExit(f"classes {ds.class_names} differ from the model's {clf.class_names}")
    if args.frame_sides:
        _frame_sides(ds, clf)
        return
    preds = {z: [] for z in zooms}
    for i in range(len(ds)):
        image = ds.read(i)
        batch = torch.stack([clf.prepare(zoom_field(image, z) if z != 1.0 else image) for z in zooms])
        p = clf.predict_proba(batch, tta=args.tta).argmax(1)
        for z, k in zip(zooms, p, strict=True):
            preds[z].append(int(k))
    y = ds.labels
    rng = np.random.default_rng(0)
    boot = rng.integers(0, len(y), (args.boot, len(y)))
    labels = list(range(len(ds.class_names)))

    def interval(values: np.ndarray) -> str:
        lo, hi = np.percentile(values, [2.5, 97.5])
        return f"[{lo:.3f}, {hi:.3f}]"

    print(f"model {args.model} ({clf.preprocessing.describe()}), {len(y)} images of {args.data}, "
          f"tta {clf.card.tta_default if args.tta is None else args.tta}")
    base = np.asarray(preds[1.0])
    for z in zooms:
        p = np.asarray(preds[z])
        correct = p == y
        acc = correct.mean()
        f1 = f1_score(y, p, labels=labels, average="macro", zero_division=0)
        f1_boot = [f1_score(y[b], p[b], labels=labels, average="macro", zero_division=0)
                   for b in boot[:500]]
        line = (f"zoom {z:4.2f}: accuracy {acc:.3f} {interval(correct[boot].mean(1))}  "
                f"macro F1 {f1:.3f} {interval(np.asarray(f1_boot))}")
        if z != 1.0:
            diff = correct.astype(float) - (base == y)
            line += (f"  change {diff.mean():+.3f} {interval(diff[boot].mean(1))}  "
                     f"same prediction {np.mean(p == base):.3f}")
        print(line)


def _frame_sides(ds, clf) -> None:
    """Percentiles of the frame side automatic framing cuts, in the image's own pixels, and the
    share of images whose frame at half scale (draft JPEG decoding) would still hold the
    network's input size without upsampling."""
    from galaxymorph.data.framing import auto_crop_side

    pre = clf.preprocessing
    sides, full = [], []
    for i in range(len(ds)):
        image = ds.read(i)
        sides.append(auto_crop_side(image, pre.frame_radii, pre.crop))
        full.append(min(image.shape[:2]))
    sides_a = np.asarray(sides, dtype=float)
    q = np.percentile(sides_a, [5, 25, 50, 75, 95])
    print(f"{len(sides_a)} images of {ds.spec} "
          f"(image side median {int(np.median(full))} px), frame {pre.frame_radii} x 2 radii, "
          f"network input {pre.image_size} px")
    print("frame side px, 5/25/50/75/95%: " + " / ".join(f"{v:.0f}" for v in q))
    print(f"frames that keep >= {pre.image_size} px at half scale: {np.mean(sides_a / 2 >= pre.image_size):.3f}")


if __name__ == "__main__":
    main()
