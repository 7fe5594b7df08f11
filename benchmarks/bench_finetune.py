"""Should I start from galaxymorph's model or from ImageNet? Fine-tuning learning curves.

    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py --shared ../shared/data \\
        --seeds 0 1 --out runs/bench_finetune

* ``gz2``: 0 (the parent as it is), 25, 50, 100 and all 235 labels of ``gz2_clean/train.csv`` (a stratified subset per
  seed), scored on ``gz2_clean/dev.csv`` (never trained or tuned on).
* ``ring``: ``gzdecals_ring/`` ring vs not ring, a new head, with 50 and 200 labels; scored on a
  fixed held-out test set of ring images (``benchmarks/data/gzdecals_ring_test.json``, made
  once with seed 0 and committed, so every run and arm is scored on the same images).

Arms, with the same labels, preprocessing (the built-in model's size and crop), schedule and
seeds: ``builtin`` (``galaxymorph.finetune`` from ``--from``, default the built-in model),
``imagenet`` (ImageNet MobileNetV2, full fine-tuning at a lower backbone rate) and
``scratch`` (MobileNetV2 from random weights). Each fine-tune splits its labels 80/10/10 as
``galaxymorph finetune`` does (validation: early stopping and temperature). Figures: the
mean over seeds; 95% intervals from a bootstrap over the scored images (the same resample for
every seed); minutes are wall-clock per fine-tune on this machine (CPU minutes beside them,
which show how much of the wall-clock was spent waiting for a busy machine).

Finished fine-tunes are kept under ``--out`` and reused, so an interrupted benchmark resumes
and arms can be run separately (``--arms imagenet scratch``); the built-in arm's folder names
the parent's weights (their SHA-256), so a new built-in model is never confused with an old.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

RING_TEST = Path(__file__).parent / "data" / "gzdecals_ring_test.json"
GZ2_SIZES = (25, 50, 100, 235)
RING_SIZES = (50, 200)


def stratified_subset(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows with the class fractions of ``df`` (all of it when ``n >= len(df)``)."""
    if n >= len(df):
        return df
    from sklearn.model_selection import train_test_split

    part, _ = train_test_split(df, train_size=n, stratify=df["label"], random_state=seed)
    return part.sort_index()


def absolute_catalog(df: pd.DataFrame, image_dir: Path, path: Path) -> str:
    """Write ``df`` with absolute image paths (the CSV lives in the benchmark's folder)."""
    out = df.copy()
    out["filename"] = [str((image_dir / f).resolve()) for f in out["filename"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return f"catalog:{path}"


def ring_split(labels: pd.DataFrame, per_class: int = 100) -> list[str]:
    """The fixed held-out ring test set: made once (seed 0, ``per_class`` per class), then read."""
    if RING_TEST.exists():
        return json.loads(RING_TEST.read_text())["test"]
    rng = np.random.default_rng(0)
    test = sorted(str(f) for lab in sorted(labels["label"].unique())
                  for f in rng.permutation(labels.loc[labels["label"] == lab, "filename"].to_numpy())[:per_class])
    RING_TEST.parent.mkdir(parents=True, exist_ok=True)
    RING_TEST.write_text(json.dumps({"source": "gzdecals_ring/labels.csv", "seed": 0,
                                     "per_class": per_class, "test": test}, indent=1) + "\n")
    return test


def weights_tag(ref: str) -> str:
    from galaxymorph.models.parent import parent_folder

    digest = hashlib.sha256((parent_folder(ref) / "model.safetensors").read_bytes()).hexdigest()
    return digest[:10]


def fine_tune(arm: str, data: str, out: Path, seed: int, args, card) -> None:
    import galaxymorph
    from galaxymorph.training.finetune import FINETUNE_DEFAULTS

    common = dict(epochs=args.epochs, seed=seed, split_seed=seed, threads=args.threads,
                  progress=False, tta=False)
    if arm == "builtin":
        galaxymorph.finetune(args.from_model, data=data, out=out, **common)
    else:
        # The parent's preprocessing exactly (size, framing), so the arms differ only in weights;
        # random weights have nothing to protect, so they train at the full learning rate.
        scratch = {"backbone_lr_mult": 1.0} if arm == "scratch" else {}
        galaxymorph.train(data=data, out=out, model=card.architecture, pretrained=arm == "imagenet",
                          image_size=card.image_size, crop=card.crop, framing=card.framing,
                          frame_radii=card.frame_radii, **(FINETUNE_DEFAULTS | common | scratch))


def run_one(task: str, arm: str, n: int, seed: int, train_df: pd.DataFrame, image_dir: Path,
            test_spec: str, args, card, tag: str) -> dict:
    """One fine-tune and its scores on the test images (cached in its folder)."""
    from galaxymorph.models.loading import load_classifier

    folder = args.out / task / f"{tag}_n{n}_s{seed}"
    record_path = folder / "bench_record.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    if folder.exists():  # an interrupted fine-tune: start it again
        import shutil

        shutil.rmtree(folder)
    data = absolute_catalog(stratified_subset(train_df, n, seed), image_dir, folder / "labels.csv")
    wall, cpu = time.perf_counter(), time.process_time()
    fine_tune(arm, data, folder / "run", seed, args, card)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    y, probs = score(load_classifier(folder / "run"), test_spec)
    summary = json.loads((folder / "run" / "summary.json").read_text())
    record = {"task": task, "arm": arm, "tag": tag, "n": n, "seed": seed, "wall_s": wall, "cpu_s": cpu,
              "epochs": summary["epochs"], "y": y.tolist(),
              "probs": probs.round(5).tolist()}
    record_path.write_text(json.dumps(record))
    print(f"{task} {tag} n={n} seed={seed}: accuracy {np.mean(np.argmax(record['probs'], 1) == y):.3f}, "
          f"{wall / 60:.1f} min ({cpu / 60:.1f} CPU min), {summary['epochs']} epochs", flush=True)
    return record


def zero_shot(test_spec: str, args, tag: str) -> dict:
    """The parent scored without fine-tuning (its classes are the GZ2 task's)."""
    from galaxymorph.models.loading import load_classifier

    y, probs = score(load_classifier(args.from_model), test_spec)
    return {"task": "gz2", "arm": "builtin", "tag": tag, "n": 0, "seed": 0, "wall_s": 0.0, "cpu_s": 0.0,
            "epochs": 0, "y": y.tolist(), "probs": probs.tolist()}


def score(clf, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and calibrated probabilities (one pass, no TTA) of every image of ``spec``."""
    from galaxymorph.data.cache import ImageTensorDataset, decode_all
    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.evaluation.evaluate import dataset_logits
    from galaxymorph.models.calibration import softmax

    ds = open_dataset(spec)
    if ds.class_names != clf.class_names:
        raise SystemExit(f"{spec}: classes {ds.class_names} are not the model's {clf.class_names}")
    decoded = decode_all(ds, clf.preprocessing, progress=False)
    items = ImageTensorDataset(decoded.images, ds.labels, np.flatnonzero(decoded.ok))
    logits, y = dataset_logits(clf.engine, items)
    return y, softmax(logits, clf.temperature)


def seed_mean_scores(records: list[dict], n_boot: int = 1000) -> dict[str, tuple[float, float, float]]:
    """Accuracy, macro F1 and ECE: mean over seeds, and a 95% bootstrap interval over images."""
    from galaxymorph.evaluation.metrics import expected_calibration_error, scores_from_confusion

    y = np.asarray(records[0]["y"])
    probs = [np.asarray(r["probs"]) for r in records]
    k = probs[0].shape[1]
    rng = np.random.default_rng(0)
    draws = np.vstack([np.arange(len(y)), rng.integers(0, len(y), size=(n_boot, len(y)))])
    offsets = (np.arange(len(draws)) * k * k)[:, None]
    acc, f1, ece = (np.zeros(len(draws)) for _ in range(3))
    for p in probs:
        codes = y * k + p.argmax(1)
        cms = np.bincount((codes[draws] + offsets).ravel(), minlength=len(draws) * k * k)
        scores = scores_from_confusion(cms.reshape(len(draws), k, k))
        acc += scores["accuracy"] / len(probs)
        f1 += scores["f1_macro"] / len(probs)
        ece += np.array([expected_calibration_error(p[d], y[d]) for d in draws]) / len(probs)
    return {name: (float(v[0]), *(float(q) for q in np.quantile(v[1:], [0.025, 0.975])))
            for name, v in (("accuracy", acc), ("f1_macro", f1), ("ece", ece))}


def table(records: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["arm"], r["n"]), []).append(r)
    lines = ["| task | start | labels | accuracy | macro F1 | ECE | seeds | epochs | minutes (CPU) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    names = {"builtin": "galaxymorph model", "imagenet": "ImageNet MobileNetV2", "scratch": "scratch"}
    order = {"builtin": 0, "imagenet": 1, "scratch": 2}
    for (task, arm, n), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], order[kv[0][1]])):
        s = seed_mean_scores(rs)
        cell = {m: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for m, v in s.items()}
        lines.append(f"| {task} | {names[arm]} | {n} | {cell['accuracy']} | {cell['f1_macro']} | "
                     f"{cell['ece']} | {len(rs)} | {np.mean([r['epochs'] for r in rs]):.1f} | "
                     f"{np.mean([r['wall_s'] for r in rs]) / 60:.1f} "
                     f"({np.mean([r['cpu_s'] for r in rs]) / 60:.1f}) |")
    return "\n".join(lines)


def targets(records: list[dict]) -> list[str]:
    def acc(arm: str, n: int) -> float | None:
        rs = [r for r in records if (r["task"], r["arm"], r["n"]) == ("gz2", arm, n)]
        return seed_mean_scores(rs)["accuracy"][0] if rs else None

    out = []
    b235, i235, b50 = acc("builtin", 235), acc("imagenet", 235), acc("builtin", 50)
    if b235 is not None:
        out.append(f"built-in, 235 labels: accuracy {b235:.3f} (target >= 0.92: "
                   f"{'met' if b235 >= 0.92 else 'NOT met'})")
    if b235 is not None and i235 is not None:
        out.append(f"built-in - ImageNet, 235 labels: {b235 - i235:+.3f} (target >= +0.05: "
                   f"{'met' if b235 - i235 >= 0.05 else 'NOT met'})")
    if b50 is not None and i235 is not None:
        out.append(f"built-in with 50 labels {b50:.3f} vs ImageNet with 235 {i235:.3f} (target: no "
                   f"worse: {'met' if b50 >= i235 else 'NOT met'})")
    full = [r["wall_s"] for r in records if r["task"] == "gz2" and r["arm"] == "builtin" and r["n"] == 235]
    if full:
        out.append(f"fine-tune of 235 images: longest {max(full) / 60:.1f} min wall-clock (target < 5: "
                   f"{'met' if max(full) < 300 else 'NOT met'})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_finetune"))
    ap.add_argument("--from", dest="from_model", default="default", help="parent of the built-in arm")
    ap.add_argument("--arms", nargs="+", default=["builtin", "imagenet", "scratch"],
                    choices=["builtin", "imagenet", "scratch"])
    ap.add_argument("--tasks", nargs="+", default=["gz2", "ring"], choices=["gz2", "ring"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--sizes", nargs="+", type=int, default=list(GZ2_SIZES), help="gz2 label counts")
    ap.add_argument("--ring-sizes", nargs="+", type=int, default=list(RING_SIZES))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true",
                    help="print the table of the fine-tunes already finished under --out, run nothing")
    args = ap.parse_args()
    if args.table_only:
        records = [json.loads(f.read_text()) for f in sorted(args.out.glob("*/*/bench_record.json"))]
        zero = args.out / "zero_shot.json"
        records += [json.loads(zero.read_text())] if zero.exists() else []
        print(table(records))
        print()
        print("\n".join(targets(records)))
        return

    from galaxymorph.models.artifact import read_card
    from galaxymorph.models.parent import parent_folder

    card = read_card(parent_folder(args.from_model))
    prep = (f"{card.image_size}px_crop{card.crop}" if card.framing == "fixed"
            else f"{card.image_size}px_{card.framing}{card.frame_radii}")
    tags = {"builtin": f"builtin-{weights_tag(args.from_model)}", "imagenet": f"imagenet_{prep}",
            "scratch": f"scratch_{prep}"}
    print(f"parent: {args.from_model} ({card.name}, {card.architecture}, {prep}); epochs {args.epochs}; "
          f"seeds {args.seeds}", flush=True)
    tasks = {}
    if "gz2" in args.tasks:
        root = args.shared / "gz2_clean"
        tasks["gz2"] = (pd.read_csv(root / "train.csv"), root / "images",
                        absolute_catalog(pd.read_csv(root / "dev.csv"), root / "images",
                                         args.out / "gz2_dev.csv"), args.sizes)
    if "ring" in args.tasks:
        root = args.shared / "gzdecals_ring"
        labels = pd.read_csv(root / "labels.csv")
        held_out = labels["filename"].isin(set(ring_split(labels)))
        tasks["ring"] = (labels[~held_out], root / "images",
                         absolute_catalog(labels[held_out], root / "images", args.out / "ring_test.csv"),
                         args.ring_sizes)
    records = []
    if "gz2" in tasks and "builtin" in args.arms:  # the parent as it is: 0 labels
        records.append(zero_shot(tasks["gz2"][2], args, tags["builtin"]))
        (args.out / "zero_shot.json").write_text(json.dumps(records[-1]))
    for task, (train_df, image_dir, test_spec, sizes) in tasks.items():
        for seed in args.seeds:
            for n in sizes:
                for arm in args.arms:
                    records.append(run_one(task, arm, n, seed, train_df, image_dir, test_spec, args,
                                           card, tags[arm]))
    print()
    print(table(records))
    print()
    print("\n".join(targets(records)))


if __name__ == "__main__":
    main()
