"""Benchmark ``galaxymorph predict``: JPEG files on disk -> CSV, against the bare forward pass.

Measures, on this machine:

1. images/s of ``galaxymorph.predict`` from JPEG files (GZ1 cutouts, 423x423) to a written CSV,
   everything included (model load, worker start, decoding, crop/resize, forward, writing);
2. images/s of the same model's forward pass on the same images already decoded and prepared
   (uint8 tensors of the network's input size), and the ratio 1/2 (target >= 0.9); also the
   CPU time per image of the forward pass and of predict's main process, a ratio that other
   jobs on a shared machine do not distort (the wall-clock one they do);
3. peak memory (VmHWM of the predicting process, and the largest decoding worker) for a small
   and a large number of images: it must not grow with the number of images;
4. optionally (``--ray``) the Ray Data engine against the local one on the same images.

Files are symlinks to the GZ1 images, repeated as needed, in a temporary folder.

    python benchmarks/bench_predict.py                      # default model, 2000 images, 1k vs 20k
    python benchmarks/bench_predict.py --model runs/x --n 500 --mem-sizes 500,5000 --ray
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gz1"


def make_folder(root: Path, sources: list[Path], n: int) -> Path:
    """``n`` symlinks to ``sources`` (cycled) in a fresh folder, in subfolders of 1000."""
    folder = root / f"images_{n}"
    if folder.exists():
        return folder
    tmp = root / f".images_{n}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = tmp / f"{i // 1000:04d}"
        sub.mkdir(exist_ok=True)
        src = sources[i % len(sources)]
        (sub / f"{i:07d}_{src.name}").symlink_to(src)
    tmp.rename(folder)
    return folder


def time_predict(folder: Path, model: str, out: Path, batch_size: int, workers: int | None,
                 engine: str = "local", tta: bool = False):
    """Wall seconds of one ``predict`` call, and its summary."""
    import resource

    import galaxymorph

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    summary = galaxymorph.predict(folder, model=model, out=out, overwrite=True, batch_size=batch_size,
                               workers=workers, engine=engine, progress=False, tta=tta)
    seconds = time.perf_counter() - start
    me2, kids2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of this process and of its (finished) decoding workers during the call.
    summary.cpu_main = (me2.ru_utime + me2.ru_stime) - (me.ru_utime + me.ru_stime)
    summary.cpu_workers = (kids2.ru_utime + kids2.ru_stime) - (kids.ru_utime + kids.ru_stime)
    if summary.n_errors:
        print(f"  warning: {summary.n_errors} unreadable images", file=sys.stderr)
    return seconds, summary


def time_forward(folder: Path, model: str, n: int, batch_size: int,
                 tta: bool = False) -> dict[str, float]:
    """Forward pass only, on the images already decoded and prepared, for several thread counts."""
    import torch

    from galaxymorph.data.imageio import read_image
    from galaxymorph.inference.sources import walk_images
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, device="cpu")
    paths = list(walk_images(folder))[:n]
    batch = torch.stack([clf.prepare(read_image(p)) for p in paths])
    results = {}
    previous = torch.get_num_threads()
    for threads in sorted({1, os.cpu_count() or 1, max(1, (os.cpu_count() or 1) - 1)}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            clf.predict_proba(batch[:batch_size], tta)  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(batch), batch_size):
                clf.predict_proba(batch[i:i + batch_size], tta)
            results[f"{threads} thread(s)"] = len(batch) / (time.perf_counter() - start)
            if threads == 1:
                results["cpu_ms_per_image"] = 1000 * (time.process_time() - cpu) / len(batch)
    torch.set_num_threads(previous)
    return results


_MEM_CHILD = r"""
import json, resource, sys, time
import galaxymorph
folder, model, out, bs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
workers = None if sys.argv[5] == "auto" else int(sys.argv[5])
t = time.perf_counter()
s = galaxymorph.predict(folder, model=model, out=out, overwrite=True, batch_size=bs, workers=workers,
                     progress=False)
secs = time.perf_counter() - t
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"n": s.n_images, "seconds": secs, "main_kb": hwm, "worker_kb": children}))
"""


def peak_memory(folder: Path, model: str, out: Path, batch_size: int, workers: int | None) -> dict:
    cmd = [sys.executable, "-c", _MEM_CHILD, str(folder), model, str(out), str(batch_size),
           "auto" if workers is None else str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"memory run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="default | RUN_DIR | CHECKPOINT")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ (GZ1)")
    ap.add_argument("--n", type=int, default=2000, help="images for the throughput comparison")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: auto)")
    ap.add_argument("--mem-sizes", default="1000,20000",
                    help="image counts for the peak-memory runs ('' to skip)")
    ap.add_argument("--tta", action="store_true", help="8-fold rotation/flip averaging on both sides")
    ap.add_argument("--ray", action="store_true", help="also time the Ray engine")
    ap.add_argument("--ray-n", type=int, default=1000, help="images for the Ray comparison")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the symlink folders here")
    args = ap.parse_args()

    from galaxymorph.models.loading import load_classifier

    try:
        clf = load_classifier(args.model)
    except Exception as exc:
        raise SystemExit(f"cannot load model {args.model!r}: {exc}\n(pass --model RUN_DIR)") from exc
    image_dir = args.data / "images" if (args.data / "images").is_dir() else args.data
    sources = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        raise SystemExit(f"no JPEG images in {image_dir}")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="galaxymorph_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"model {args.model} ({clf.card.architecture}, {clf.preprocessing.image_size} px), "
          f"{os.cpu_count()} CPU cores, batch {args.batch_size}, TTA {'on' if args.tta else 'off'}, "
          f"images from {image_dir}")

    rows: list[tuple[str, str]] = []
    folder = make_folder(root, sources, args.n)
    # Forward, predict, forward: on a shared machine the load drifts; average the two forwards.
    before = time_forward(folder, args.model, args.n, args.batch_size, args.tta)
    seconds, summary = time_predict(folder, args.model, root / "preds.csv", args.batch_size,
                                    args.workers, tta=args.tta)
    after = time_forward(folder, args.model, args.n, args.batch_size, args.tta)
    forward = {k: (before[k] + after[k]) / 2 for k in before}
    forward_cpu = forward.pop("cpu_ms_per_image")
    n = summary.n_images
    predict_rate = n / seconds
    rows.append((f"predict JPEG -> CSV ({n} images, all included)", f"{predict_rate:,.0f} images/s"))
    rows.append(("  share of predict wall time spent in the forward pass",
                 f"{summary.forward_seconds / seconds:.0%}"))
    rows.append(("  CPU per image: main process / decoding workers",
                 f"{1000 * summary.cpu_main / n:.1f} ms / {1000 * summary.cpu_workers / n:.1f} ms"))
    best_name, best = max(forward.items(), key=lambda kv: kv[1])
    for name, rate in forward.items():
        rows.append((f"bare forward, pre-decoded tensors, {name}", f"{rate:,.0f} images/s"))
    rows.append((f"ratio predict / best forward ({best_name})", f"{predict_rate / best:.2f} (target >= 0.9)"))
    main_ms = 1000 * summary.cpu_main / n
    rows.append(("CPU per image: bare forward (1 thread) / predict main process",
                 f"{forward_cpu:.1f} ms / {main_ms:.1f} ms (ratio {forward_cpu / main_ms:.2f}; "
                 "independent of other load)"))

    sizes = [int(s) for s in args.mem_sizes.split(",") if s.strip()]
    for size in sizes:
        mem = peak_memory(make_folder(root, sources, size), args.model, root / f"mem_{size}.csv",
                          args.batch_size, args.workers)
        rows.append((f"peak memory, {mem['n']} images ({mem['n'] / mem['seconds']:,.0f} images/s)",
                     f"main {mem['main_kb'] / 1024:,.0f} MB, largest worker "
                     f"{mem['worker_kb'] / 1024:,.0f} MB"))

    if args.ray:
        ray_folder = make_folder(root, sources, args.ray_n)
        s_local, local = time_predict(ray_folder, args.model, root / "local.csv", args.batch_size,
                                      args.workers)
        s_ray, remote = time_predict(ray_folder, args.model, root / "ray.csv", args.batch_size,
                                     args.workers, engine="ray")
        n_local, n_ray = local.n_images, remote.n_images
        rows.append((f"local engine, {n_local} images", f"{n_local / s_local:,.0f} images/s ({s_local:.1f} s)"))
        rows.append((f"ray engine, {n_ray} images (Ray start included)",
                     f"{n_ray / s_ray:,.0f} images/s ({s_ray:.1f} s)"))

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if not args.workdir:
        print(f"\n(symlink folders in {root}; delete when done)")


if __name__ == "__main__":
    main()
