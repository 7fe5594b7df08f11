"""Real-vs-synthetic detector: accuracy on a generator it was trained against (seen) and on one
it never saw (unseen). Targets: accuracy >= 99.5% and ROC AUC >= 0.999 on held-out images of the
seen generator; the unseen number is reported as it comes.

    .venv/bin/python benchmarks/bench_detector.py --real ../shared/data/gz1 --real-crop 0.5 \
        --n 800 --image-size 64 --epochs 10 --work /tmp/det_bench \
        [--gan-samples GAN_SAMPLE_DIR ...] [--reuse]

Real: GZ1 SDSS images (centre-cropped to ``--real-crop`` so that they are framed like the
generated galaxies). Seen generator A: the procedural renderer (``galaxymorph.data.synthetic``);
training uses one set of renders, the seen-generator test a fresh set drawn with another seed.
Unseen generators, each tested on its own: an "eigengalaxy" sampler (a PCA fitted to real
images; samples are the mean galaxy plus Gaussian draws of the component coefficients: a
different generative model, smooth and low-rank, learnt from real data) and every
``--gan-samples`` folder (``galaxymorph gan sample`` output). Real test images are those whose group
the detector neither trained nor early-stopped on (``evaluate_detector`` excludes them); every
test uses the same real images, so the tests differ only in the generated side.
``--train-fake`` adds generators to the training side (leave-one-generator-out tests).
``--reuse`` evaluates a finished run in ``--work`` again (e.g. with new GAN samples).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_ACCURACY = 0.995
TARGET_AUC = 0.999


def eigengalaxy_catalog(real_spec: str, out_dir: Path, n_fit: int, n: int, size: int, crop: float,
                        components: int, seed: int) -> str:
    """Fit a PCA to ``n_fit`` real images at ``size`` px and write ``n`` samples as a catalog."""
    from PIL import Image
    from sklearn.decomposition import PCA

    from galaxymorph.detection import Resampling
    from galaxymorph.detection.assembly import open_images
    from galaxymorph.errors import ImageReadError
    from galaxymorph.io_utils import write_text

    ds = open_images(real_spec)
    rng = np.random.default_rng(seed)
    res = Resampling(size)
    rows = []
    for i in rng.permutation(len(ds))[: n_fit]:
        try:
            rows.append(res.apply(ds.read(int(i)), crop).permute(1, 2, 0).numpy().reshape(-1))
        except ImageReadError:
            continue
    x = np.asarray(rows, dtype=np.float64)
    pca = PCA(n_components=min(components, len(x) - 1), random_state=seed).fit(x)
    z = rng.standard_normal((n, pca.n_components_)) * np.sqrt(pca.explained_variance_)
    samples = np.clip(pca.inverse_transform(z), 0, 255).round().astype(np.uint8)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = ["filename,label,label_name"]
    for k, s in enumerate(samples):
        name = f"images/eigen_{k:05d}.png"
        Image.fromarray(s.reshape(size, size, 3)).save(out_dir / name)
        lines.append(f"{name},0,eigengalaxy")
    write_text(out_dir / "labels.csv", "\n".join(lines) + "\n")
    return f"catalog:{out_dir / 'labels.csv'}"


def _renders(folder: Path, per_class: int, size: int, seed: int) -> str:
    from galaxymorph.data.synthetic import write_synthetic_catalog

    csv = folder / "labels.csv"
    return f"catalog:{csv if csv.exists() else write_synthetic_catalog(folder, per_class, size=size, seed=seed)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default="../shared/data/gz1")
    ap.add_argument("--real-crop", type=float, default=0.5)
    ap.add_argument("--n", type=int, default=800, help="images per class for training")
    ap.add_argument("--n-eval", type=int, default=600, help="images per class in each test")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--render-size", type=int, default=64, help="native size of the renders")
    ap.add_argument("--model", default="seed-detector")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--gan-samples", action="append", default=[],
                    help="GAN sample folder or catalog spec: another unseen generator (repeatable)")
    ap.add_argument("--train-fake", action="append", default=[],
                    help="another generator to train on besides the renderer (repeatable)")
    ap.add_argument("--no-eigen", action="store_true", help="skip the eigengalaxy sampler")
    ap.add_argument("--reuse", action="store_true",
                    help="with --work: reuse a finished detector run there (evaluate only)")
    ap.add_argument("--pca-components", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep everything here (default: a temp folder)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from galaxymorph.detection import evaluate_detector, train_detector

    tmp = None if args.work else tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_class = -(-args.n // 4)
    fake_a = _renders(work / "renderer_train", per_class, args.render_size, args.seed + 1)
    fake_a_test = _renders(work / "renderer_test", -(-args.n_eval // 4), args.render_size,
                           args.seed + 2)
    unseen_specs: dict[str, str] = {}
    if not args.no_eigen:
        eigen = work / "eigengalaxies"
        unseen_specs[f"eigengalaxy PCA sampler ({args.pca_components} components)"] = (
            f"catalog:{eigen / 'labels.csv'}" if (eigen / "labels.csv").exists() else
            eigengalaxy_catalog(args.real, eigen, n_fit=1000, n=args.n_eval,
                                size=args.render_size, crop=args.real_crop,
                                components=args.pca_components, seed=args.seed + 3))
    for spec in args.gan_samples:
        unseen_specs[f"GAN samples {spec}"] = spec
    t_data = time.perf_counter() - t0

    t1 = time.perf_counter()
    run_dir = work / "run"
    if args.reuse and (run_dir / "detector_metrics.json").exists():
        from galaxymorph.detection.api import DetectorRun

        run = DetectorRun(run_dir, json.loads((run_dir / "detector_metrics.json").read_text()), {},
                          run_dir / "data" / "detector_catalog.csv")
    else:
        run = train_detector(args.real, [fake_a, *args.train_fake], run_dir, model=args.model,
                             image_size=args.image_size, real_crop=args.real_crop,
                             max_per_side=args.n, epochs=args.epochs, patience=args.patience,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             progress=False, threads=args.threads)
    t_train = time.perf_counter() - t1
    seen = evaluate_detector(run.run_dir, args.real, [fake_a_test], work / "eval_seen",
                             max_per_side=args.n_eval, seed=args.seed, progress=False)
    unseen = {name: evaluate_detector(run.run_dir, args.real, [spec], work / f"eval_unseen_{k}",
                                      max_per_side=args.n_eval, seed=args.seed, progress=False)
              for k, (name, spec) in enumerate(unseen_specs.items())}
    summary = json.loads((run.run_dir / "summary.json").read_text())
    t_train = summary.get("train_seconds", t_train) if args.reuse else t_train

    def row(m: dict) -> dict:
        per = m.get("per_source", {})
        return {"n": m["n"], "accuracy": m["accuracy"], "roc_auc": m["roc_auc"],
                "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                "confusion_matrix": m["confusion_matrix"],
                "per_source_accuracy": {k: v["accuracy"] for k, v in per.items()}}

    result = {
        "real": args.real, "real_crop": args.real_crop, "model": args.model,
        "image_size": args.image_size, "train_per_class": args.n, "epochs_run": summary["epochs"],
        "seen_generator": "procedural renderer (galaxymorph.data.synthetic), fresh renders",
        "also_trained_on": args.train_fake,
        "test_fold": {k: run.metrics[k] for k in ("n", "accuracy", "roc_auc")},
        "seen": row(seen), "unseen": {name: row(m) for name, m in unseen.items()},
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "targets": {"accuracy": TARGET_ACCURACY, "roc_auc": TARGET_AUC},
    }
    ok_acc = seen["accuracy"] >= TARGET_ACCURACY
    ok_auc = (seen["roc_auc"] or 0) >= TARGET_AUC
    print(f"detector {args.model} at {args.image_size} px, {args.n} images per class, "
          f"{summary['epochs']} epochs, {result['seconds']['train']:.0f} s training")
    print(f"  seen generator   (renderer, held-out renders): accuracy {seen['accuracy']:.4f} "
          f"[target {TARGET_ACCURACY} {'met' if ok_acc else 'MISSED'}], ROC AUC "
          f"{seen['roc_auc']:.5f} [target {TARGET_AUC} {'met' if ok_auc else 'MISSED'}], n {seen['n']}")
    for name, m in unseen.items():
        print(f"  unseen generator ({name}): accuracy {m['accuracy']:.4f}, ROC AUC "
              f"{m['roc_auc']:.5f}, recall (generated flagged) {m['recall']:.4f}, n {m['n']}")
    if args.json:
        from galaxymorph.io_utils import write_json

        write_json(args.json, result)
    if args.work:
        from galaxymorph.io_utils import write_json

        write_json(work / "bench_detector.json", result)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
