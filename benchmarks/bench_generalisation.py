"""Benchmark: does a model hold up on other surveys' cutouts? The old and the new default model
side by side, in one run.

For each model, on
1. its own GZ1 test fold (the images of its ``split.json`` test fold that are in gz1/),
2. ``gz2_clean/dev.csv`` (235 clean-label Galaxy Zoo 2 galaxies in another framing; never trained on),
3. the same dev images shrunk to 0.7x (padded with sky) and
4. enlarged to 1.4x (centre-cropped back to the original size),
it prints accuracy, macro F1 and ECE with 95% bootstrap intervals, accuracy at 90% and 80%
coverage (the most confident images), and the share the model answers "uncertain" when its
card has an abstention threshold. Framing robustness is the accuracy change 0.7x/1.4x vs 1x.

The old model is the built-in one of commit a3009a4, extracted from git into a temporary folder
(or ``--old DIR``); the new one is the installed built-in model (or ``--new DIR``).

    python benchmarks/bench_generalisation.py                      # old (git) vs built-in, card TTA
    python benchmarks/bench_generalisation.py --new runs/x --no-tta --limit 40   # quick smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "a3009a4"
OLD_FILES = ("model.safetensors", "model_card.json", "split.json")


def shared_root() -> Path:
    env = os.environ.get("GALAXYMORPH_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def extract_old(commit: str, dest: Path) -> Path:
    """The built-in model folder as it was at ``commit`` (git show of each file)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in OLD_FILES:
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:src/galaxymorph/default_model/{name}"],
                              check=True, capture_output=True).stdout
        (dest / name).write_bytes(blob)
    return dest


def rescale(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """The same field of view with the galaxy ``factor`` times larger: shrunk and padded with
    sky (noise drawn from the border's per-channel median and spread), or enlarged and
    centre-cropped. The output has the input's size."""
    from PIL import Image

    h, w = image.shape[:2]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    scaled = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.LANCZOS))
    if factor >= 1:
        top, left = (nh - h) // 2, (nw - w) // 2
        return scaled[top:top + h, left:left + w].copy()
    b = max(2, min(h, w) // 20)
    border = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
                             image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)]).astype(np.float64)
    med = np.median(border, axis=0)
    spread = 1.4826 * np.median(np.abs(border - med), axis=0)  # robust std (MAD)
    canvas = rng.normal(med, np.maximum(spread, 0.5), size=(h, w, 3))
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = scaled
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def probabilities(clf, ds, tta: bool, factor: float = 1.0, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and labels of the readable images of ``ds`` (optionally rescaled)."""
    import torch

    from galaxymorph.errors import ImageReadError

    rng = np.random.default_rng(0)
    probs, labels, pending, pending_y = [], [], [], []

    def flush():
        if pending:
            probs.append(clf.predict_proba(torch.stack(pending), tta=tta))
            labels.extend(pending_y)
            pending.clear()
            pending_y.clear()

    for i in range(len(ds)):
        try:
            image = ds.read(i)
        except ImageReadError:
            continue
        if factor != 1.0:
            image = rescale(image, factor, rng)
        pending.append(clf.prepare(image))
        pending_y.append(int(ds.labels[i]))
        if len(pending) == batch:
            flush()
    flush()
    return np.concatenate(probs), np.asarray(labels, dtype=np.int64)


def ece_interval(probs: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    from galaxymorph.evaluation.metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error(probs[idx], y[idx])
             for idx in rng.integers(0, len(y), size=(n_boot, len(y)))]
    return [float(v) for v in np.quantile(draws, [0.025, 0.975])]


def score(clf, probs: np.ndarray, y: np.ndarray) -> dict:
    from galaxymorph.evaluation.metrics import classification_metrics
    from galaxymorph.evaluation.selective import selective_metrics

    m = classification_metrics(y, probs, clf.class_names)
    sel = selective_metrics(probs, y, clf.abstain_threshold)
    return {"n": m["n"], "accuracy": m["accuracy"], "accuracy_ci": m["ci95"]["accuracy"],
            "f1_macro": m["f1_macro"], "f1_ci": m["ci95"]["f1_macro"], "ece": m["ece"],
            "ece_ci": ece_interval(probs, y), "acc90": sel["accuracy_at_coverage"]["0.90"],
            "acc80": sel["accuracy_at_coverage"]["0.80"],
            "uncertain": sel["threshold"]["uncertain"] / m["n"] if "threshold" in sel else None}


def datasets_for(clf, ref: str, root: Path, limit: int | None):
    """``(name, dataset, zoom factor)`` of the four evaluation sets for model ``ref``."""
    from galaxymorph.data.splits import Split
    from galaxymorph.evaluation.api import model_split_path, open_for_model

    gz1 = open_for_model(f"catalog:{root}/gz1/labels.csv", None, clf.class_names,
                         clf.card.training_data.get("label_map"))
    split_path = model_split_path(ref)
    if split_path is None:
        raise SystemExit(f"{ref}: no split.json, so its own GZ1 test fold is unknown")
    have = set(gz1.ids)
    # A multi-source split prefixes each id with its source's folder ("gz1/images/x.jpeg").
    test = [i if i in have else i.split("/", 1)[-1] for i in Split.load(split_path).test]
    test = [i for i in test if i in have]
    own = gz1.select_ids(test)
    dev = open_for_model(f"catalog:{root}/gz2_clean/dev.csv", None, clf.class_names)
    if limit:
        own, dev = own.subset(np.arange(min(limit, len(own)))), dev.subset(np.arange(min(limit, len(dev))))
    return [("GZ1 own test fold", own, 1.0), ("gz2_clean/dev", dev, 1.0),
            ("dev shrunk 0.7x (sky pad)", dev, 0.7), ("dev enlarged 1.4x (crop)", dev, 1.4)]


def gz1_transition(clf) -> np.ndarray | None:
    """The class-transition matrix a run learned for its GZ1 source (``--noisy-labels``), in the
    model's class order, or None."""
    learned = (clf.card.training or {}).get("label_transitions") or {}
    for spec, entry in learned.items():
        if "gz1" in Path(spec.removeprefix("catalog:")).parts:
            t = np.asarray(entry["matrix"], dtype=np.float64)
            if list(entry["classes"]) == list(clf.class_names) and t.shape == (len(clf.class_names),) * 2:
                return t / t.sum(axis=1, keepdims=True)
    return None


def interval(v: float, ci: list[float]) -> str:
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", help=f"old model folder (default: the built-in model of {OLD_COMMIT}, from git)")
    ap.add_argument("--new", default="default", help="new model (default: the built-in one)")
    ap.add_argument("--data-root", type=Path, default=None, help="the shared data folder")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="8-fold rotation/flip averaging (default: what each card says)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per set (smoke runs)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    from galaxymorph.models.loading import load_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data_root or shared_root()
    print(f"command: python benchmarks/{Path(__file__).name} {' '.join(argv or sys.argv[1:])}")
    print(f"load: {os.getloadavg()[0]:.1f} (1-min), {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        old = args.old or str(extract_old(OLD_COMMIT, Path(tmp) / "old_default"))
        models = [("old", old), ("new", args.new)]
        results: dict[tuple[str, str], dict] = {}
        predicted: dict[tuple[str, str], np.ndarray] = {}
        for label, ref in models:
            clf = load_classifier(ref, device="cpu")
            tta = clf.card.tta_default if args.tta is None else args.tta
            print(f"{label}: {ref} ({clf.card.name or clf.card.architecture}; tta {tta}; "
                  f"abstention threshold {clf.abstain_threshold})", flush=True)
            for name, ds, factor in datasets_for(clf, ref, root, args.limit):
                start = time.perf_counter()
                probs, y = probabilities(clf, ds, tta, factor)
                results[(name, label)] = score(clf, probs, y)
                predicted[(name, label)] = probs.argmax(axis=1)
                print(f"  {name}: {len(y)} images, {time.perf_counter() - start:.0f} s", flush=True)
                t = gz1_transition(clf) if name == "GZ1 own test fold" else None
                if t is not None:
                    # The model's answer in GZ1's own labelling convention: p @ T of that source,
                    # and the map `calibrate --conventions` re-fitted on its validation images.
                    results[(name + ", GZ1 convention (p @ T)", label)] = score(clf, probs @ t, y)
                    conv = clf.with_convention("gz1")
                    if conv.convention_map is not None:
                        results[(name + ", GZ1 convention (re-fitted map)", label)] = score(
                            conv, conv.in_convention(probs), y)
    print()
    print("| set | model | n | accuracy [95%] | macro F1 [95%] | ECE [95%] | acc @90% cov. | "
          "acc @80% cov. | uncertain |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, label), r in results.items():
        unc = "-" if r["uncertain"] is None else f"{r['uncertain']:.0%}"
        print(f"| {name} | {label} | {r['n']} | {interval(r['accuracy'], r['accuracy_ci'])} | "
              f"{interval(r['f1_macro'], r['f1_ci'])} | {interval(r['ece'], r['ece_ci'])} | "
              f"{r['acc90']:.3f} | {r['acc80']:.3f} | {unc} |")
    print()
    print("Framing: accuracy change against the original dev images (target: within 0.03), and the")
    print("share of galaxies whose predicted class stays the same")
    for label, _ in models:
        base = results[("gz2_clean/dev", label)]["accuracy"]
        same = predicted[("gz2_clean/dev", label)]
        shifts = ", ".join(f"{name.split(' (')[0].removeprefix('dev ')} {results[(name, label)]['accuracy'] - base:+.3f} "
                           f"(same class {np.mean(predicted[(name, label)] == same):.0%})"
                           for name in ("dev shrunk 0.7x (sky pad)", "dev enlarged 1.4x (crop)"))
        print(f"- {label}: {shifts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
