"""Benchmark similarity search: retrieval, rings, the odd ones first, and the index at scale.

One command prints every figure of issue 34, for ``--model`` beside ImageNet features and a
pixel baseline in the same run:

- GZ2 retrieval: precision@10 (the share of a query's 10 neighbours in its class) of the 235
  ``gz2_clean/dev`` queries against an index of other labelled GZ2 images: ``gz2_clean/train``
  (235) and ``gz2_hart8`` mapped to the 4 classes (Round/In-between/Cigar elliptical ->
  Elliptical, Edge-on, Barred/Unbarred spiral -> Spiral, Merger; Irregular left out: 2,555),
  with per-class figures, the neighbours' classes and P@k for other k (reported, never tuned);
- ring retrieval: precision@10 of the 235 ``gzdecals_ring`` ring images against the other 469
  images of the set (leave-one-out);
- odd-galaxy ranking: average precision of rings (12 drawn at random, 200 draws, among the 235
  non-rings: 4.9%) and of mergers (the 33 of ``gz2_hart8`` among its 2,522 ordinary galaxies,
  Irregular left out: 1.3%), for the k-th-neighbour distance and a Gaussian-mixture density;
- scale: build time, memory, query latency and recall@10 against exact search of the
  approximate index on 100k and 1M synthetic embeddings of the model's dimension, drawn from a
  Gaussian mixture fitted to the real embeddings (so they have their clustering and spectrum).

Intervals are 95%: a bootstrap over queries (P@10) or images (merger AP), the spread over draws
(ring AP). Embeddings and indexes are cached in ``--work`` (reused when the model is the same).

    python benchmarks/bench_similarity.py --model default
    python benchmarks/bench_similarity.py --model runs/new --scale 100000   # a quicker run
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("GALAXYMORPH_SHARED_DATA", REPO.parent / "shared" / "data"))
HART8_TO_4 = {"Round_elliptical": "Elliptical", "In-between_elliptical": "Elliptical",
              "Cigar_elliptical": "Elliptical", "Edge-on": "Edge-on", "Barred_spiral": "Spiral",
              "Unbarred_spiral": "Spiral", "Merger": "Merger"}  # Irregular: left out
CLASSES = ["Elliptical", "Spiral", "Edge-on", "Merger"]
K = 10
BOOT = 2000


# -- data ---------------------------------------------------------------------------------------


def catalogs(data: Path, work: Path) -> dict[str, str]:
    """The benchmark's catalog specs (absolute file names, written once into ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(data / "gz2_clean" / "train.csv")
    train = pd.DataFrame({"filename": [str(data / "gz2_clean" / "images" / f) for f in train.filename],
                          "label_name": train.label_name, "source": "gz2_clean/train"})
    hart = pd.read_csv(data / "gz2_hart8" / "labels.csv")
    hart = hart[hart.label_name.isin(list(HART8_TO_4))]
    hart = pd.DataFrame({"filename": [str(data / "gz2_hart8" / "images" / f) for f in hart.filename],
                         "label_name": hart.label_name.map(HART8_TO_4), "source": "gz2_hart8"})
    both = pd.concat([train, hart], ignore_index=True)
    both.insert(1, "label", both.label_name.map(CLASSES.index))
    both.to_csv(work / "gz2_index.csv", index=False)
    return {"gz2": f"catalog:{work / 'gz2_index.csv'}",
            "dev": f"catalog:{data / 'gz2_clean' / 'dev.csv'}",
            "rings": f"catalog:{data / 'gzdecals_ring' / 'labels.csv'}"}


def imagenet_model(model: str, work: Path) -> str:
    """A model folder of MobileNetV2 with ImageNet weights (its head unused), with ``model``'s
    framing at 224 px (ImageNet's own input size), without TTA (ImageNet features as they are
    used; 8 views at 224 px cost 40x the model's embedding on this benchmark's 2 cores)."""
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.loading import load_classifier
    from galaxymorph.models.network import build_network

    folder = work / "imagenet-mobilenetv2"
    if (folder / "model_card.json").exists():
        return str(folder)
    card = load_classifier(model).card
    net = build_network("mobilenetv2", len(CLASSES), pretrained=True)
    save_artifact(folder, net, ModelCard("mobilenetv2", CLASSES, 224, card.crop, framing=card.framing,
                                         frame_radii=card.frame_radii, tta_default=False,
                                         name="imagenet-mobilenetv2"))
    return str(folder)


def ensure_index(spec: str, model: str, folder: Path, tta: bool | None = None):
    """The index of ``spec`` with ``model`` in ``folder``: reused, resumed or built."""
    from galaxymorph.errors import GalaxymorphError
    from galaxymorph.search.build import build_index
    from galaxymorph.search.index import SimilarityIndex

    try:
        ix = SimilarityIndex.open(folder)
        ix.classifier(model)  # refused when the model changed since
        return ix
    except GalaxymorphError:
        pass
    try:
        build_index([spec], model=model, out=folder, resume=folder.exists(), kind="flat", tta=tta,
                    progress=False)
    except GalaxymorphError:  # embeddings of another model: start again
        build_index([spec], model=model, out=folder, overwrite=True, kind="flat", tta=tta,
                    progress=False)
    return SimilarityIndex.open(folder)


class PixelIndex:
    """The pixel baseline, shaped like a SimilarityIndex: each image through the model's framing
    at 32 px, standardised per image and L2-normalised (cosine = pixel correlation)."""

    def __init__(self, spec: str, pre, cache: Path):
        from galaxymorph.inference.sources import InputPlan
        from galaxymorph.search import ann

        plan = InputPlan([spec])
        items = list(plan)
        if cache.exists():
            vectors = np.load(cache)
        else:
            vectors = np.stack([pixels(plan.read(it), pre) for it in items])
            np.save(cache, vectors)
        source = plan.sources[0]
        self.table = pd.DataFrame({"path": [it.key for it in items],
                                   "label_name": [source.class_names[int(source.labels[i])] for i in range(len(items))]})
        meta = source.metadata
        if meta is not None and "source" in meta:
            self.table["source"] = meta["source"].to_numpy()
        self.stored = vectors
        self.index = ann.new_index("flat", vectors.shape[1])
        self.index.add(vectors)


def pixels(image: np.ndarray, pre) -> np.ndarray:
    from dataclasses import replace

    from galaxymorph.data.transforms import prepare

    x = prepare(image, replace(pre, image_size=32)).numpy().astype(np.float32).ravel()
    x = (x - x.mean()) / (x.std() + 1e-6)
    return x / np.linalg.norm(x)


def stored_vectors(ix) -> np.ndarray:
    return ix.stored if isinstance(ix, PixelIndex) else np.concatenate(list(ix.vectors()))


def neighbours(ix, vectors: np.ndarray, paths: list[str], k: int = K) -> np.ndarray:
    """Ids of the ``k`` nearest stored images of each vector (its own path left out)."""
    from galaxymorph.search import ann

    ids_of = {p: i for i, p in enumerate(ix.table["path"])}
    exclude = np.array([ids_of.get(p, -1) for p in paths], dtype=np.int64)
    return ann.search(ix.index, vectors, k, exclude)[0]


# -- retrieval ----------------------------------------------------------------------------------


def interval(values: np.ndarray, seed: int = 0, stat=np.mean) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    boots = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(BOOT)]
    return float(stat(values)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def fmt(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def query_vectors(rep: str, ix, spec: str, model: str | None, pre) -> tuple[np.ndarray, list[str], list[str]]:
    """The dev queries' vectors, paths and classes (embedded with the index's model)."""
    from galaxymorph.inference.embed import run_embed
    from galaxymorph.inference.sources import InputPlan

    plan = InputPlan([spec])
    source = plan.sources[0]
    if rep == "pixels":
        items = list(plan)
        vectors = np.stack([pixels(plan.read(it), pre) for it in items])
        return vectors, [it.key for it in items], [source.class_names[int(source.labels[i])] for i in range(len(items))]
    frame = run_embed(plan, ix.classifier(model), model, ix.tta, progress=False)
    return np.stack(frame["embedding"].to_list()), frame["path"].tolist(), frame["label_name"].tolist()


def centred(ix, vectors: np.ndarray) -> tuple:
    """A flat index of the stored vectors minus their mean (re-normalised), and ``vectors``
    moved the same way: cosine about the index's mean instead of the origin (a diagnostic:
    the features are non-negative, so every embedding shares one large common direction)."""
    from galaxymorph.search import ann

    stored = stored_vectors(ix)
    mean = stored.mean(axis=0)
    unit = lambda v: np.ascontiguousarray((v - mean) / np.linalg.norm(v - mean, axis=1, keepdims=True),  # noqa: E731
                                          dtype=np.float32)
    index = ann.new_index("flat", stored.shape[1])
    index.add(unit(stored))
    return index, unit(vectors)


def gz2_retrieval(ix, vectors: np.ndarray, paths: list[str], labels: list[str]) -> dict:
    from galaxymorph.search import ann

    ids = neighbours(ix, vectors, paths, 20)
    got = ix.table["label_name"].to_numpy()[ids]
    y = np.array(labels)
    hits = got == y[:, None]
    index, moved = centred(ix, vectors)
    centred_hits = ix.table["label_name"].to_numpy()[ann.search(index, moved, K)[0]] == y[:, None]
    out = {"p_at_10": interval(hits[:, :K].mean(axis=1)),
           "p_at_k": {k: float(hits[:, :k].mean()) for k in (1, 5, 10, 20)},
           "per_class": {c: interval(hits[y == c, :K].mean(axis=1)) for c in CLASSES},
           "neighbour_classes": {c: {d: float((got[y == c, :K] == d).mean()) for d in CLASSES} for c in CLASSES},
           "knn_vote_accuracy": float(np.mean([pd.Series(r[:K]).mode()[0] == t for r, t in zip(got, y, strict=True)])),
           "p_at_10_centred": interval(centred_hits.mean(axis=1))}
    if "predicted_class" in ix.table:  # how far the index's labels agree with the model itself
        table = ix.table
        groups = table.groupby("source") if "source" in table else [("all", table)]
        out["model_agrees_with_labels"] = {
            part: float((g["predicted_class"] == g["label_name"]).mean()) for part, g in groups}
    if "source" in ix.table:  # the same queries against each part of the index alone
        from galaxymorph.search import ann

        stored = stored_vectors(ix)
        for part in ("gz2_clean/train", "gz2_hart8"):
            keep = np.flatnonzero(ix.table["source"].to_numpy() == part)
            sub = ann.new_index("flat", stored.shape[1])
            sub.add(np.ascontiguousarray(stored[keep]))
            part_ids = keep[ann.search(sub, vectors, K)[0]]
            out[f"p_at_10_{part}"] = interval((ix.table["label_name"].to_numpy()[part_ids] == y[:, None]).mean(axis=1))
    return out


def ring_retrieval(ix) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from galaxymorph.search import ann

    vectors = stored_vectors(ix)
    is_ring = ix.table["label_name"].to_numpy() == "ring"
    ring = np.flatnonzero(is_ring)
    ids = neighbours(ix, vectors[ring], ix.table["path"].iloc[ring].tolist())
    hits = is_ring[ids]
    index, moved = centred(ix, vectors[ring])
    centred_hits = is_ring[ann.search(index, moved, K, exclude=ring)[0]]
    # Is "ring" in the representation at all? A linear probe's 5-fold accuracy says.
    probe = cross_val_score(LogisticRegression(C=1.0, max_iter=2000), vectors, is_ring, cv=5)
    return {"p_at_10": interval(hits.mean(axis=1)), "queries": len(ring),
            "chance": float((len(ring) - 1) / (len(vectors) - 1)),
            "p_at_10_centred": interval(centred_hits.mean(axis=1)),
            "linear_probe_accuracy": float(probe.mean())}


# -- odd ranking --------------------------------------------------------------------------------


def odd_rankings(rings_ix, gz2_ix, draws: int = 200, n_rings: int = 12) -> dict:
    from sklearn.metrics import average_precision_score

    from galaxymorph.search.odd import METHODS, score_vectors

    out: dict = {}
    vectors = stored_vectors(rings_ix)
    is_ring = rings_ix.table["label_name"].to_numpy() == "ring"
    plain, rings = np.flatnonzero(~is_ring), np.flatnonzero(is_ring)
    rng = np.random.default_rng(0)
    drawn = [rng.choice(rings, n_rings, replace=False) for _ in range(draws)]
    for method in METHODS:
        aps = []
        for chosen in drawn:
            ids = np.concatenate([plain, chosen])
            scores = score_vectors(vectors[ids], method)
            aps.append(average_precision_score(np.r_[np.zeros(len(plain)), np.ones(n_rings)], scores))
        out[f"rings_{method}"] = (float(np.mean(aps)), float(np.percentile(aps, 2.5)), float(np.percentile(aps, 97.5)))
    out["rings_chance"] = n_rings / (len(plain) + n_rings)
    table = gz2_ix.table
    hart = np.flatnonzero(table["source"].to_numpy() == "gz2_hart8")
    y = (table["label_name"].to_numpy()[hart] == "Merger").astype(int)
    hv = stored_vectors(gz2_ix)[hart]
    for method in METHODS:
        scores = score_vectors(hv, method)
        boots = []
        rng = np.random.default_rng(1)
        for _ in range(BOOT):
            pick = rng.integers(0, len(y), len(y))
            if y[pick].any():
                boots.append(average_precision_score(y[pick], scores[pick]))
        out[f"mergers_{method}"] = (float(average_precision_score(y, scores)),
                                    float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
    out["mergers_chance"] = float(y.mean())
    out["mergers_n"] = [int(y.sum()), len(y)]
    return out


# -- scale --------------------------------------------------------------------------------------


class Synthetic:
    """Embeddings like the real ones: a Gaussian mixture in their top principal components (64
    hold 99.9% of the real embeddings' variance) plus isotropic noise of the remaining variance,
    then L2-normalised (so neighbours are as crowded as among real galaxies, not the empty space
    of uniform random vectors)."""

    def __init__(self, real: np.ndarray, dims: int = 64, components: int = 64, seed: int = 0):
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        dims = min(dims, len(real) - 1)
        self.pca = PCA(dims, random_state=seed).fit(real)
        coords = self.pca.transform(real)
        self.gmm = GaussianMixture(components, covariance_type="diag", reg_covar=1e-6,
                                   random_state=seed).fit(coords)
        resid = real - self.pca.inverse_transform(coords)
        self.noise = float(np.sqrt((resid ** 2).mean()))
        self.dim = real.shape[1]

    def draw(self, n: int, seed: int) -> np.ndarray:
        self.gmm.random_state = seed
        z, _ = self.gmm.sample(n)
        x = self.pca.inverse_transform(z).astype(np.float32)
        x += np.random.default_rng(seed).normal(0, self.noise, x.shape).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x[np.random.default_rng(seed + 1).permutation(n)]  # sample() groups by component


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def latency(index, queries: np.ndarray, k: int = K) -> dict:
    """One query at a time on one thread: wall and CPU time (the CPU time is what a dedicated
    core would take; wall time includes this machine's contention)."""
    import faiss

    faiss.omp_set_num_threads(1)
    walls, cpus = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        index.search(q[None], k)
        cpus.append(time.thread_time() - c0)
        walls.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    ms = lambda v, p: float(np.percentile(v, p) * 1e3)  # noqa: E731
    return {"wall_ms_median": ms(walls, 50), "wall_ms_p95": ms(walls, 95),
            "cpu_ms_median": ms(cpus, 50), "cpu_ms_p95": ms(cpus, 95)}


def scale(real: np.ndarray, sizes: list[int], n_queries: int = 200, chunk: int = 50_000) -> dict:
    from galaxymorph.search import ann

    gen = Synthetic(real)
    queries = gen.draw(n_queries, seed=999_999)
    out = {"dim": gen.dim, "noise": gen.noise}
    for n in sizes:
        params = ann.ivf_params(n, gen.dim)
        index = ann.new_index("ivf", gen.dim, params)
        flat = ann.new_index("flat", gen.dim) if n <= 200_000 else None
        before = rss()
        t_train = time.perf_counter()
        ann.train(index, gen.draw(ann.train_size(n, params), seed=0))
        build = time.perf_counter() - t_train
        best = np.full((n_queries, K), -np.inf, dtype=np.float32)
        best_ids = np.zeros((n_queries, K), dtype=np.int64)
        flat_build = 0.0
        for start in range(0, n, chunk):
            x = gen.draw(min(chunk, n - start), seed=1 + start)
            t0 = time.perf_counter()
            index.add(x)
            build += time.perf_counter() - t0
            if flat is not None:
                t0 = time.perf_counter()
                flat.add(x)
                flat_build += time.perf_counter() - t0
            sims = queries @ x.T  # exact search, merged chunk by chunk
            both = np.concatenate([best, sims], axis=1)
            ids = np.concatenate([best_ids, np.arange(start, start + len(x))[None].repeat(n_queries, 0)], axis=1)
            top = np.argsort(-both, axis=1)[:, :K]
            best, best_ids = np.take_along_axis(both, top, 1), np.take_along_axis(ids, top, 1)
        grown = rss() - before
        row = {"nlist": params["nlist"], "pca": params["pca"], "train": ann.train_size(n, params),
               "build_s": build, "bytes": ann.memory_bytes(index),
               "rss_growth_bytes": grown, "flat_bytes": n * gen.dim * 4, "sweep": {}}
        for nprobe in sorted({8, 16, 32, 64, 128, params["nprobe"]}):
            ann.configure(index, {**params, "nprobe": min(nprobe, params["nlist"])})
            got = index.search(queries, K)[1]
            recall = float(np.mean([len(set(g) & set(e)) / K for g, e in zip(got, best_ids, strict=True)]))
            row["sweep"][nprobe] = {"recall": recall, **latency(index, queries)}
        ann.configure(index, params)
        row["nprobe"] = params["nprobe"]
        if flat is not None:
            row["flat"] = {"build_s": flat_build, **latency(flat, queries[:50])}
        out[n] = row
        report_scale(n, row)
        del index, flat
    return out


def report_scale(n: int, row: dict) -> None:
    print(f"  {n:>9,d}: ivf (PCA{row['pca']}, IVF{row['nlist']}, SQ8; re-ranked on SQ8 codes of the "
          f"full vectors) trained on {row['train']:,d} and built in {row['build_s']:.1f} s wall, "
          f"{row['bytes'] / 2**30:.2f} GiB in memory (flat would be {row['flat_bytes'] / 2**30:.2f} GiB; "
          f"RSS grew {row['rss_growth_bytes'] / 2**30:.2f} GiB)")
    for nprobe, v in row["sweep"].items():
        mark = " <- shipped" if nprobe == row["nprobe"] else ""
        print(f"             nprobe {nprobe:4d}: recall@10 {v['recall']:.3f}, query {v['cpu_ms_median']:.2f} ms CPU "
              f"(p95 {v['cpu_ms_p95']:.2f}), {v['wall_ms_median']:.2f} ms wall{mark}")
    if "flat" in row:
        f = row["flat"]
        print(f"             flat (exact): built in {f['build_s']:.1f} s, query {f['cpu_ms_median']:.2f} ms CPU "
              f"(p95 {f['cpu_ms_p95']:.2f}), {f['wall_ms_median']:.2f} ms wall", flush=True)


# -- main ---------------------------------------------------------------------------------------


def report_retrieval(name: str, r: dict) -> None:
    print(f"  {name:12s} P@10 {fmt(r['p_at_10'])}  " + "  ".join(
        f"P@{k} {v:.3f}" for k, v in r["p_at_k"].items()) + f"  10-NN vote accuracy {r['knn_vote_accuracy']:.3f}")
    print(f"               about the index's mean (centred cosine, a diagnostic): P@10 {fmt(r['p_at_10_centred'])}")
    print("               per class: " + ", ".join(f"{c} {fmt(v)}" for c, v in r["per_class"].items()))
    for part in ("gz2_clean/train", "gz2_hart8"):
        if f"p_at_10_{part}" in r:
            print(f"               against {part} alone: P@10 {fmt(r[f'p_at_10_{part}'])}")
    if "model_agrees_with_labels" in r:
        print("               its own class agrees with the index's labels: " + ", ".join(
            f"{k} {v:.3f}" for k, v in r["model_agrees_with_labels"].items()))
    print("               neighbours' classes (rows: query class): " + "; ".join(
        f"{c}: " + " ".join(f"{d[:4]} {v:.2f}" for d, v in row.items())
        for c, row in r["neighbour_classes"].items()))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="default | RUN_DIR")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_similarity"),
                    help="cache of embeddings and indexes (reused when the model is the same)")
    ap.add_argument("--scale", default="100000,1000000", help="synthetic index sizes ('' to skip)")
    ap.add_argument("--reps", default="model,imagenet,pixels,model-no-tta",
                    help="representations to compare (model-no-tta: the model without TTA; '' "
                         "for the scale figures alone)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GALAXYMORPH_OFFLINE", "1")
    # OpenMP threads that sleep rather than spin while they wait: on a shared machine a spinning
    # FAISS or BLAS thread burns the time slices the other one needs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from galaxymorph.models.loading import load_classifier

    t_start = time.perf_counter()
    specs = catalogs(args.data, args.work)
    clf = load_classifier(args.model)
    tag = clf.representation_hash()[:12]
    print(f"model {args.model} ({clf.card.name}, representation {tag}, TTA {clf.card.tta_default}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    models = {"model": args.model, "model-no-tta": args.model,
              "imagenet": imagenet_model(args.model, args.work)}
    results: dict = {"model": args.model, "representation": tag}
    indexes: dict = {}
    reps = [r for r in args.reps.split(",") if r]
    for rep in reps:
        if rep == "pixels":
            pre = clf.preprocessing
            indexes[rep] = {s: PixelIndex(specs[s], pre, args.work / f"pixels_{s}.npy") for s in ("gz2", "rings")}
        else:
            folder = args.work / (tag if rep == "model" else f"{tag}-no-tta" if rep == "model-no-tta" else rep)
            tta = False if rep == "model-no-tta" else None
            indexes[rep] = {s: ensure_index(specs[s], models[rep], folder / s, tta) for s in ("gz2", "rings")}
        print(f"[{rep}] indexes ready ({time.perf_counter() - t_start:.0f} s)", flush=True)
    if reps:
        retrieval(args, specs, models, clf, indexes, results)
    sizes = [int(s) for s in args.scale.split(",") if s]
    if sizes:
        model_ix = {s: ensure_index(specs[s], args.model, args.work / tag / s) for s in ("gz2", "rings")}
        real = np.concatenate([stored_vectors(model_ix[s]) for s in ("gz2", "rings")])
        print(f"\nScale: synthetic embeddings of {real.shape[1]} dimensions (a Gaussian mixture fitted to "
              f"{len(real)} real ones); one query at a time on one thread, 200 queries; "
              "CPU ms = a dedicated core's time", flush=True)
        results["scale"] = scale(real, sizes)
    out = args.work / f"results-{tag}.json"
    earlier = json.loads(out.read_text()) if out.exists() else {}  # a scale-only run keeps the rest
    out.write_text(json.dumps({**earlier, **results}, indent=1, default=str))
    print(f"\n({time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.1f}; figures in {out})")


def retrieval(args, specs: dict, models: dict, clf, indexes: dict, results: dict) -> None:
    """The GZ2, ring and odd-ranking figures of every representation."""
    print(f"\nGZ2 retrieval: {len(pd.read_csv(args.data / 'gz2_clean' / 'dev.csv'))} gz2_clean/dev queries "
          f"against {len(indexes[next(iter(indexes))]['gz2'].table)} labelled GZ2 images "
          "(gz2_clean/train + gz2_hart8 in 4 classes); 95% bootstrap intervals over queries")
    for rep, ix in indexes.items():
        vectors, paths, labels = query_vectors(rep, ix["gz2"], specs["dev"],
                                               models.get(rep), clf.preprocessing)
        results[f"gz2_{rep}"] = r = gz2_retrieval(ix["gz2"], vectors, paths, labels)
        report_retrieval(rep, r)
    print("\nRing retrieval: gzdecals_ring ring queries against the other 469 images (leave-one-out)")
    for rep, ix in indexes.items():
        results[f"rings_{rep}"] = r = ring_retrieval(ix["rings"])
        print(f"  {rep:12s} P@10 {fmt(r['p_at_10'])} ({r['queries']} queries; chance {r['chance']:.3f}); "
              f"centred cosine {fmt(r['p_at_10_centred'])}; linear probe ring/not 5-fold accuracy "
              f"{r['linear_probe_accuracy']:.3f}")
    print("\nOdd-galaxy ranking, average precision (higher: the rare class comes first)")
    from threadpoolctl import threadpool_limits

    for rep, ix in indexes.items():
        with threadpool_limits(limits=1):  # 1,000s of small fits: threads only wait on each other
            results[f"odd_{rep}"] = r = odd_rankings(ix["rings"], ix["gz2"])
        print(f"  {rep:12s} rings among non-rings (4.9%, 200 draws): knn {fmt(r['rings_knn'])}, "
              f"gmm {fmt(r['rings_gmm'])}; chance {r['rings_chance']:.3f}")
        print(f"               mergers in gz2_hart8 ({r['mergers_n'][0]} of {r['mergers_n'][1]}): "
              f"knn {fmt(r['mergers_knn'])}, gmm {fmt(r['mergers_gmm'])}; chance {r['mergers_chance']:.3f}")


if __name__ == "__main__":
    main()
