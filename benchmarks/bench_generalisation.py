"""Benchmark: does a model hold up on other surveys' cutouts? Two models side by side, in one run.

For each model, every figure with its 95% bootstrap interval:
1. ``gz1-test``: its own GZ1 test fold (its ``split.json``), as it answers and in GZ1's
   labelling convention (the model's ``gz1`` convention, when it has one);
2. ``dev``: ``gz2_clean/dev.csv`` (235 clean-label GZ2 galaxies, never trained on), and the same
   images shrunk 0.7x (sky-padded) and enlarged 1.4x (framing robustness);
3. ``decals``: the 110 real Galaxy10 DECaLS images of ``galaxy10_decals_sample`` in GZ1-4 terms
   (label map ``galaxy10-gz1-4``: 88 images, Disturbed and Cigar-shaped left out), with
   elliptical and merger recall; and, for a decision-tree model, its ``galaxy10`` taxonomy on
   all 110 (the classes it merges counted as one);
4. ``votes``: vote-fraction RMSE on the held-out ``gz2_votes`` images of the model's test fold,
   over the table's 17 columns in its own weighting, beside the RMSE of predicting the
   training fold's mean;
5. ``hart8``: the ``gz2-8`` taxonomy on the held-out ``gz2_hart8`` images of its test fold;
6. ``rings``: a DECaLS proxy that is **not a test set** (``gzdecals_ring``, 470 GZ DECaLS
   images, ring / not ring): the ROC AUC of P(ring) = P(odd) P(ring | odd) for rings against
   the others, and the share of rings (disc galaxies) called featured. Recipes are chosen with
   this and validation figures, never with 2-3.

Sets a model cannot answer (a 4-class model has no vote fractions) are left out. ``--sets``
picks some; a recipe is chosen with ``--fold val`` (the models' validation folds in place of
their test folds, and no dev or decals) and ``rings``.

The old model is the built-in one of commit d3e94e6 (the four-class v10), extracted from git
(or ``--old DIR``); the new one is the installed built-in model (or ``--new DIR``).

    python benchmarks/bench_generalisation.py                      # old (git) vs built-in, card TTA
    python benchmarks/bench_generalisation.py --old runs/a --new runs/b --fold val \
        --sets gz1-test,votes,hart8,rings                          # choosing a recipe
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
OLD_COMMIT = "d3e94e6"
OLD_FILES = ("model.safetensors", "model_card.json", "split.json")
SETS = ("gz1-test", "dev", "decals", "votes", "hart8", "rings")


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


class Scored:
    """A model's outputs on the readable images of a dataset: class probabilities, a tree
    model's answers (else None), labels and the dataset positions scored."""

    def __init__(self, clf, ds, tta: bool, factor: float = 1.0, batch: int = 64):
        import torch

        from galaxymorph.errors import ImageReadError

        rng = np.random.default_rng(0)
        probs, answers, pos, pending = [], [], [], []

        def flush():
            if pending:
                p, a = clf.predict_outputs(torch.stack(pending), tta=tta)
                probs.append(p)
                answers.append(a)
                pending.clear()

        for i in range(len(ds)):
            try:
                image = ds.read(i)
            except ImageReadError:
                continue
            if factor != 1.0:
                image = rescale(image, factor, rng)
            pending.append(clf.prepare(image))
            pos.append(i)
            if len(pending) == batch:
                flush()
        flush()
        self.positions = np.asarray(pos, dtype=np.int64)
        self.probs = np.concatenate(probs)
        self.answers = None if answers[0] is None else np.concatenate(answers)
        self.labels = np.asarray(ds.labels)[self.positions]


def ece_interval(probs: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    from galaxymorph.evaluation.metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error(probs[idx], y[idx])
             for idx in rng.integers(0, len(y), size=(n_boot, len(y)))]
    return [float(v) for v in np.quantile(draws, [0.025, 0.975])]


def recall_interval(y: np.ndarray, pred: np.ndarray, k: int, n_boot: int = 2000) -> tuple[float, list[float]]:
    sel = np.flatnonzero(y == k)
    hits = (pred[sel] == k).astype(float)
    rng = np.random.default_rng(0)
    boot = hits[rng.integers(0, len(hits), size=(n_boot, len(hits)))].mean(axis=1)
    return float(hits.mean()), [float(v) for v in np.quantile(boot, [0.025, 0.975])]


def score(clf, probs: np.ndarray, y: np.ndarray, class_names: list[str] | None = None) -> dict:
    from galaxymorph.evaluation.metrics import classification_metrics
    from galaxymorph.evaluation.selective import selective_metrics

    names = class_names or clf.class_names
    m = classification_metrics(y, probs, names)
    sel = selective_metrics(probs, y, clf.abstain_threshold)
    out = {"n": m["n"], "accuracy": m["accuracy"], "accuracy_ci": m["ci95"]["accuracy"],
           "f1_macro": m["f1_macro"], "f1_ci": m["ci95"]["f1_macro"], "ece": m["ece"],
           "ece_ci": ece_interval(probs, y), "acc90": sel["accuracy_at_coverage"]["0.90"],
           "acc80": sel["accuracy_at_coverage"]["0.80"],
           "uncertain": sel["threshold"]["uncertain"] / m["n"] if "threshold" in sel else None,
           "recall": {}}
    pred = probs.argmax(axis=1)
    for k, name in enumerate(names):
        if (y == k).any():
            out["recall"][name] = recall_interval(y, pred, k)
    return out


def test_fold(ds, ref: str, fold: str = "test"):
    """The images of ``ds`` in the model's saved ``fold`` (None: the model has no split)."""
    from galaxymorph.data.splits import Split
    from galaxymorph.evaluation.seen import local_ids, model_split_path

    path = model_split_path(ref)
    if path is None:
        return None
    return ds.select_ids(local_ids(ds, Split.load(path).fold(fold)))


def gz1_convention(clf):
    """The model answering in GZ1's labelling convention, or None."""
    from galaxymorph.errors import ModelError

    try:
        conv = clf.with_convention("gz1")
    except ModelError:
        return None
    return conv if conv is not clf else None


def run_model(label: str, ref: str, root: Path, sets: list[str], tta_arg, limit: int | None,
              results: dict, predicted: dict, notes: list[str], fold: str = "test") -> None:
    from galaxymorph.data.dataset import open_dataset
    from galaxymorph.data.questions import find_vote_columns, in_table_weighting
    from galaxymorph.evaluation.api import open_for_model
    from galaxymorph.evaluation.metrics import vote_rmse
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(ref, device="cpu")
    tta = clf.card.tta_default if tta_arg is None else tta_arg
    print(f"{label}: {ref} ({clf.card.name or clf.card.architecture}; tree {clf.is_tree}; "
          f"tta {tta}; abstention threshold {clf.abstain_threshold})", flush=True)

    def cut(ds):
        return ds.subset(np.arange(min(limit, len(ds)))) if limit else ds

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
        return out

    if "gz1-test" in sets:
        gz1 = open_for_model(f"catalog:{root}/gz1/labels.csv", "gz1-4", clf.class_names)
        own = test_fold(gz1, ref, fold)
        if own is None:
            notes.append(f"{label}: no split.json, so its own GZ1 test fold is unknown")
        else:
            s = timed("GZ1 test fold", lambda: Scored(clf, cut(own), tta))
            results[(f"GZ1 own {fold} fold", label)] = score(clf, s.probs, s.labels)
            conv = gz1_convention(clf)
            if conv is not None:
                p = conv.probabilities(None, s.answers) if clf.is_tree else conv.in_convention(s.probs)
                results[(f"GZ1 own {fold} fold, GZ1 convention", label)] = score(conv, p, s.labels)
    if "dev" in sets:
        dev = cut(open_for_model(f"catalog:{root}/gz2_clean/dev.csv", None, clf.class_names))
        for name, factor in (("gz2_clean/dev", 1.0), ("dev shrunk 0.7x (sky pad)", 0.7),
                             ("dev enlarged 1.4x (crop)", 1.4)):
            s = timed(name, lambda f=factor: Scored(clf, dev, tta, f))
            results[(name, label)] = score(clf, s.probs, s.labels)
            predicted[(name, label)] = s.probs.argmax(axis=1)
    if "decals" in sets:
        g10 = cut(open_dataset(f"catalog:{root}/galaxy10_decals_sample/labels.csv", "galaxy10-gz1-4")
                  .with_classes(clf.class_names))
        s = timed("Galaxy10 DECaLS (GZ1-4 terms)", lambda: Scored(clf, g10, tta))
        results[("Galaxy10 DECaLS sample, GZ1-4 terms", label)] = score(clf, s.probs, s.labels)
        if clf.is_tree:
            t10 = clf.with_taxonomy("galaxy10")
            raw = cut(open_dataset(f"catalog:{root}/galaxy10_decals_sample/labels.csv"))
            tax = t10.taxonomy
            table = np.asarray(tax.table_for(raw.class_names))
            s = timed("Galaxy10 DECaLS (galaxy10)", lambda: Scored(t10, raw, tta))
            results[("Galaxy10 DECaLS sample, galaxy10 taxonomy (all)", label)] = score(
                t10, s.probs, table[s.labels], list(tax.classes))
            notes.append(f"galaxy10 taxonomy merges: {tax.merges}")
    if "votes" in sets and clf.is_tree:
        from galaxymorph.data.dataset import GalaxyDataset
        from galaxymorph.data.specs import open_source

        spec = f"catalog:{root}/gz2_votes/votes.csv"
        src = open_source(spec)
        found = find_vote_columns(src.metadata.columns)
        every = GalaxyDataset(src, np.arange(len(src)), src.labels, src.class_names, spec)
        held = test_fold(every, ref, fold)
        train = test_fold(every, ref, "train")
        if held is None or not len(held):
            notes.append(f"{label}: no gz2_votes images in its test fold")
        else:
            held = cut(held)
            s = timed("gz2_votes test fold", lambda: Scored(clf, held, tta))
            table = src.metadata.iloc[held.indices[s.positions]].reset_index(drop=True)
            r = vote_rmse(in_table_weighting(s.answers, found, clf.schema), table)
            mean = src.metadata.iloc[train.indices][list(found.columns)].mean()
            base = vote_rmse({c: np.full(len(table), mean[c]) for c in found.columns}, table)
            results[(f"gz2_votes {fold} fold: vote RMSE", label)] = {
                "n": r["n_images"], "rmse": r["rmse"], "rmse_ci": r.get("ci95"),
                "columns": len(r["columns"]), "mean_rmse": base["rmse"]}
    if "hart8" in sets and clf.is_tree:
        t8 = clf.with_taxonomy("gz2-8")
        hart = test_fold(open_dataset(f"catalog:{root}/gz2_hart8/labels.csv").with_classes(
            t8.class_names), ref, fold)
        if hart is not None and len(hart):
            s = timed("gz2_hart8 test fold", lambda: Scored(t8, cut(hart), tta))
            results[(f"gz2_hart8 {fold} fold, gz2-8", label)] = score(t8, s.probs, s.labels)
    if "rings" in sets:
        rings = cut(open_dataset(f"catalog:{root}/gzdecals_ring/labels.csv"))
        s = timed("gzdecals_ring (proxy)", lambda: Scored(clf, rings, tta))
        is_ring = np.asarray([rings.class_names[k] == "ring" for k in s.labels])
        results[("gzdecals_ring proxy", label)] = ring_proxy(clf, s, is_ring)


def ring_proxy(clf, s: Scored, is_ring: np.ndarray) -> dict:
    """ROC AUC of P(ring) for rings vs the rest (tree models), and the share of rings that
    the model calls featured (a disc: not Elliptical), with bootstrap intervals."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(is_ring), size=(1000, len(is_ring)))
    out: dict = {"n": len(is_ring), "rings": int(is_ring.sum())}
    if clf.is_tree and 0 < out["rings"] < len(is_ring):  # a ranking needs both kinds (--limit)
        schema = clf.schema
        p_ring = (s.answers[:, schema.answer_index("something-odd", "yes")]
                  * s.answers[:, schema.answer_index("odd-feature", "ring")])
        out["auc"] = float(roc_auc_score(is_ring, p_ring))
        aucs = [roc_auc_score(is_ring[d], p_ring[d]) for d in draws if 0 < is_ring[d].sum() < len(d)]
        out["auc_ci"] = [float(v) for v in np.quantile(aucs, [0.025, 0.975])]
    featured = s.probs.argmax(axis=1) != clf.class_names.index("Elliptical") \
        if "Elliptical" in clf.class_names else np.zeros(len(is_ring), bool)
    share = featured[is_ring].astype(float)
    out["featured"] = float(share.mean())
    boot = share[rng.integers(0, len(share), size=(1000, len(share)))].mean(axis=1)
    out["featured_ci"] = [float(v) for v in np.quantile(boot, [0.025, 0.975])]
    return out


def interval(v: float, ci: list[float] | None) -> str:
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", help=f"old model folder (default: the built-in model of {OLD_COMMIT}, from git)")
    ap.add_argument("--new", default="default", help="new model (default: the built-in one)")
    ap.add_argument("--data-root", type=Path, default=None, help="the shared data folder")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="8-fold rotation/flip averaging (default: what each card says)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per set (smoke runs)")
    ap.add_argument("--fold", choices=("test", "val"), default="test",
                    help="the models' own fold for gz1-test, votes and hart8: val to choose a "
                         "recipe (then dev and decals, test sets, are refused)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None,
                    help="also write the new model's figures here (for its model card)")
    args = ap.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(sets) - set(SETS))
    if unknown:
        ap.error(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    if args.fold == "val" and {"dev", "decals"} & set(sets):
        ap.error("--fold val chooses a recipe: leave out the test sets dev and decals")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data_root or shared_root()
    print(f"command: python benchmarks/{Path(__file__).name} {' '.join(argv or sys.argv[1:])}")
    print(f"load: {os.getloadavg()[0]:.1f} (1-min), {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    results: dict[tuple[str, str], dict] = {}
    predicted: dict[tuple[str, str], np.ndarray] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        old = args.old or str(extract_old(OLD_COMMIT, Path(tmp) / "old_default"))
        models = [("old", old), ("new", args.new)]
        for label, ref in models:
            run_model(label, ref, root, sets, args.tta, args.limit, results, predicted, notes,
                      args.fold)
    print_tables(results, predicted, models, notes)
    if args.json:
        from galaxymorph.io_utils import write_json

        command = f"python benchmarks/{Path(__file__).name} {' '.join(argv or sys.argv[1:])}"
        write_json(args.json, {"command": command, "old_model": f"built-in model of {OLD_COMMIT}"
                               if not args.old else args.old,
                               "sets": {name: r for (name, label), r in results.items() if label == "new"},
                               "old": {name: r for (name, label), r in results.items() if label == "old"}})
    return 0


def print_table(header: list[str], rows: list[list], title: str = "") -> None:
    """A Markdown table after a blank line (nothing when there are no rows)."""
    if not rows:
        return
    print()
    if title:
        print(title)
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def print_tables(results: dict, predicted: dict, models: list, notes: list[str]) -> None:
    def class_row(name: str, label: str, r: dict) -> list:
        rec = "; ".join(f"{c} {interval(*v)}" for c, v in r["recall"].items()
                        if c in ("Elliptical", "Merger", "Merging", "Round Smooth"))
        return [name, label, r["n"], interval(r["accuracy"], r["accuracy_ci"]),
                interval(r["f1_macro"], r["f1_ci"]), interval(r["ece"], r["ece_ci"]),
                f"{r['acc90']:.3f}", f"{r['acc80']:.3f}",
                "-" if r["uncertain"] is None else f"{r['uncertain']:.0%}", rec]

    print_table(["set", "model", "n", "accuracy [95%]", "macro F1 [95%]", "ECE [95%]",
                 "acc @90% cov.", "acc @80% cov.", "uncertain", "recall [95%]"],
                [class_row(name, label, r) for (name, label), r in results.items()
                 if "accuracy" in r])
    print_table(["set", "model", "images", "columns", "vote RMSE [95%]", "training-mean RMSE"],
                [[name, label, r["n"], r["columns"], interval(r["rmse"], r["rmse_ci"]),
                  f"{r['mean_rmse']:.3f}"]
                 for (name, label), r in results.items() if "rmse" in r])
    print_table(["model", "n", "rings", "P(ring) ROC AUC [95%]", "rings called featured [95%]"],
                [[label, r["n"], r["rings"],
                  interval(r["auc"], r["auc_ci"]) if "auc" in r else "-",
                  interval(r["featured"], r["featured_ci"])]
                 for (_, label), r in results.items() if "featured" in r],
                title="DECaLS proxy (gzdecals_ring, not a test set): rings vs the rest")
    if ("gz2_clean/dev", models[0][0]) in results:
        print()
        print("Framing: accuracy change against the original dev images, and the share of galaxies "
              "whose predicted class stays the same")
        for label, _ in models:
            base = results[("gz2_clean/dev", label)]["accuracy"]
            same = predicted[("gz2_clean/dev", label)]
            shifts = ", ".join(
                f"{name.split(' (')[0].removeprefix('dev ')} {results[(name, label)]['accuracy'] - base:+.3f} "
                f"(same class {np.mean(predicted[(name, label)] == same):.0%})"
                for name in ("dev shrunk 0.7x (sky pad)", "dev enlarged 1.4x (crop)"))
            print(f"- {label}: {shifts}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")


if __name__ == "__main__":
    raise SystemExit(main())
