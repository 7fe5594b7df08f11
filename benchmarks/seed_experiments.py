"""Reproduce the seed report's three experiments on GZ1-4 at CPU-friendly sizes.

1. custom CNN depths (2, 3, 5, 6 conv layers, and the 4-conv wide model with dropout);
2. popular architectures trained from scratch;
3. transfer learning from ImageNet (linear probe, last block + head, full fine-tune).

Every run uses the same deterministic split (split seed 0) and writes a normal run folder;
each experiment's comparison table is printed and written as Markdown.

    .venv/bin/python benchmarks/seed_experiments.py --data ../shared/data/gz1 --out runs/seed \
        [--experiments depth scratch transfer] [--epochs 10] [--max-minutes 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXPERIMENTS: dict[str, list[dict]] = {
    "depth": [{"model": m, "image_size": 64} for m in ("cnn2", "cnn3", "cnn5", "cnn6", "cnn4-wide")],
    "scratch": [{"model": m, "image_size": 64} for m in
                ("vgg16", "resnet50", "mobilenet", "mobilenetv2", "efficientnet-b0", "convnext-tiny")],
    "transfer": [
        {"model": "mobilenetv2", "pretrained": True, "transfer": "linear-probe", "image_size": 96},
        {"model": "mobilenetv2", "pretrained": True, "transfer": "last-block", "image_size": 96},
        {"model": "mobilenetv2", "pretrained": True, "transfer": "full", "image_size": 96},
        {"model": "efficientnet-lite0", "pretrained": True, "transfer": "full", "image_size": 96},
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/gz1")
    ap.add_argument("--label-map", default="gz1-4")
    ap.add_argument("--out", type=Path, default=Path("runs/seed"))
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-minutes", type=float, default=8.0, help="Per run; CPU-friendly budget.")
    ap.add_argument("--crop", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import galaxymorph
    from galaxymorph.evaluation.compare import compare

    for name in args.experiments:
        runs = []
        for spec in EXPERIMENTS[name]:
            tag = spec["model"] + (f"-{spec['transfer']}" if spec.get("pretrained") else "")
            run_dir = args.out / name / tag
            if not (run_dir / "metrics.json").exists():
                if (run_dir / "config.yaml").exists():
                    galaxymorph.train(out=run_dir, resume=True)
                else:
                    galaxymorph.train(data=args.data, label_map=args.label_map, crop=args.crop,
                                   epochs=args.epochs, max_time_minutes=args.max_minutes,
                                   threads=args.threads, progress=False, out=run_dir, **spec)
            runs.append(run_dir)
        table = compare(runs, args.out / f"{name}.md")
        print(f"\n## Experiment: {name}\n\n{table}", flush=True)


if __name__ == "__main__":
    main()
