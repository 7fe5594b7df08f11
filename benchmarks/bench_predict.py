"""Benchmark ``galaxymorph predict``: JPEG files -> CSV, the new engines beside the old path.

Each arm runs as its own Python process on the same images and is timed whole (interpreter
start, imports, model load, decoding, forward, CSV), as a user would run it:

- ``notebook``: the plain loop an astronomer would write (PIL + torchvision transforms +
  a DataLoader with one worker, eager PyTorch, pandas CSV): the issue's yardstick;
- ``old``: ``galaxymorph.predict`` of an earlier commit (``--old-ref``, extracted with git; by
  default main just before the engines landed: eager PyTorch, TTA as 8 passes; with
  ``--model default`` it runs today's built-in weights, not the old tree's own copy);
- ``torch`` / ``onnx``: today's ``predict --engine torch|onnx`` (``onnx`` is the CPU default);
- ``ray`` (with ``--ray``): ``predict --engine ray`` on a private local Ray;
- ``onnx-fixed``: ``predict --engine onnx --crop C`` with the model's fallback crop ``C`` (the
  notebook's crop): what the engine and the pipeline give without automatic framing;
- with ``--tta``: the same with 8-view test-time augmentation.

It also prints the limit set by decode + engine CPU time on this machine's cores, the largest
probability difference between arms, and peak memory of ``predict`` for several image counts
(it must not grow with them). The machine's load (``os.getloadavg``) is printed with the figures:
run it on a quiet machine.

    python benchmarks/bench_predict.py --n 3000 --tta --mem-sizes 1000,20000
    python benchmarks/bench_predict.py --n 64 --mem-sizes 64,128 --tta     # a quick check
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "gz1"


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


_PREDICT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import galaxymorph
folder, model, out, bs, engine, tta, workers = sys.argv[1:8]
kw = {} if engine == "old" else {"engine": engine}
if engine == "onnx-fixed":  # the model's fallback crop, fixed: no automatic framing
    from galaxymorph.models.loading import load_classifier
    kw.update(engine="onnx", crop=load_classifier(model, engine="torch").preprocessing.crop)
if workers != "auto":
    kw["workers"] = int(workers)
s = galaxymorph.predict(folder, model=model, out=out, overwrite=True, batch_size=int(bs),
                        progress=False, tta=tta == "1", **kw)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"n": s.n_images, "errors": s.n_errors, "inner_seconds": time.perf_counter() - t0,
                  "main_kb": hwm, "worker_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

_NOTEBOOK = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd, torch
from pathlib import Path
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from galaxymorph.models.loading import load_classifier
folder, model, out, bs, engine, tta, workers = sys.argv[1:8]
clf = load_classifier(model, engine="torch")
net, size, crop = clf.net.eval(), clf.preprocessing.image_size, clf.preprocessing.crop
net.to(memory_format=torch.contiguous_format)  # a plain notebook does not know channels-last
files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))

class Cutouts(Dataset):
    def __len__(self): return len(files)
    def __getitem__(self, i):
        im = Image.open(files[i]).convert("RGB")
        side = round(min(im.size) * crop)
        return T.Compose([T.CenterCrop(side), T.Resize(size, antialias=True), T.ToTensor()])(im)

rows = []
with torch.inference_mode():
    for x in DataLoader(Cutouts(), batch_size=int(bs), num_workers=1):
        rows.append(torch.softmax(net(x) / clf.temperature, dim=1))
p = torch.cat(rows).numpy()
df = pd.DataFrame(p, columns=[f"prob_{c}" for c in clf.class_names]); df.insert(0, "path", files)
df.to_csv(out, index=False)
print(json.dumps({"n": len(files), "errors": 0, "inner_seconds": time.perf_counter() - t0}))
"""


def run_arm(arm: str, folder: Path, model: str, out: Path, batch: int, tta: bool,
            old_src: Path | None, workers: int | None = None) -> dict:
    code = _NOTEBOOK if arm == "notebook" else _PREDICT
    src = old_src if arm == "old" else REPO / "src"
    if arm == "old" and model == "default":
        # Today's built-in weights, not the old tree's own copy (an older ref ships an older model).
        model = str(REPO / "src" / "galaxymorph" / "default_model")
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.perf_counter()
    res0 = os.times()
    done = subprocess.run([sys.executable, "-c", code, str(folder), model, str(out), str(batch),
                           arm, "1" if tta else "0", "auto" if workers is None else str(workers)],
                          capture_output=True, text=True, env=env, check=False)
    res1 = os.times()
    if done.returncode:
        raise SystemExit(f"arm {arm} failed:\n{done.stderr[-3000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    info["seconds"] = time.perf_counter() - start
    info["cpu_seconds"] = (res1.children_user + res1.children_system) - (res0.children_user + res0.children_system)
    return info


def cpu_limit(folder: Path, model: str, n: int, batch: int, tta: bool) -> dict[str, float]:
    """CPU ms per image of decoding (1 thread) and of the ONNX engine's forward pass (2 threads),
    and the images/s they allow on this machine's cores if nothing else ran."""
    import torch

    from galaxymorph.inference.batches import ClassifierView, classifier_view, decode_batch
    from galaxymorph.inference.sources import InputPlan
    from galaxymorph.models.loading import load_classifier

    clf = load_classifier(model, engine="onnx")
    plan = InputPlan(folder)
    items = [it for _, it in zip(range(n), plan, strict=False)]
    torch.set_num_threads(1)
    c0 = time.process_time()
    _, _, x = decode_batch(plan, items, [classifier_view(clf)])
    decode_ms = 1000 * (time.process_time() - c0) / len(items)
    # The same decode with a fixed centre crop: what the model's framing itself costs.
    pre = clf.preprocessing
    c0 = time.process_time()
    decode_batch(plan, items, [ClassifierView(pre.image_size, pre.crop)])
    fixed_ms = 1000 * (time.process_time() - c0) / len(items)
    torch.set_num_threads(2)
    clf.predict_proba(x[:batch], tta)  # warm-up, session creation
    c0 = time.process_time()
    for i in range(0, len(x), batch):
        clf.predict_proba(x[i:i + batch], tta)
    engine_ms = 1000 * (time.process_time() - c0) / len(x)
    cores = os.cpu_count() or 1
    return {"decode_ms": decode_ms, "fixed_ms": fixed_ms, "engine_ms": engine_ms,
            "limit": 1000 * cores / (decode_ms + engine_ms),
            "fixed_limit": 1000 * cores / (fixed_ms + engine_ms)}


def max_diff(a: Path, b: Path) -> float:
    import pandas as pd

    da, db = pd.read_csv(a), pd.read_csv(b)
    cols = [c for c in da.columns if c.startswith("prob_")]
    da, db = da.set_index("path").loc[sorted(da["path"])], db.set_index("path").loc[sorted(db["path"])]
    return float((da[cols].to_numpy() - db[cols].to_numpy()).__abs__().max())


def extract(ref: str, root: Path) -> Path:
    dest = root / f"src_{ref}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="default | RUN_DIR | CHECKPOINT")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ (GZ1)")
    ap.add_argument("--n", type=int, default=1000, help="images for the throughput comparison")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None,
                    help="decoding processes of every predict arm (default: predict's own choice)")
    ap.add_argument("--old-ref", default="c524095",
                    help="git commit of the old predict (default: main just before the engines "
                         "landed; '' to skip)")
    ap.add_argument("--arms", default="notebook,old,torch,onnx")
    ap.add_argument("--ray", action="store_true", help="also the Ray engine (--engine ray)")
    ap.add_argument("--tta", action="store_true", help="also every predict arm with --tta")
    ap.add_argument("--mem-sizes", default="1000,20000", help="image counts for peak memory ('' to skip)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the symlink folders here")
    args = ap.parse_args()

    image_dir = args.data / "images" if (args.data / "images").is_dir() else args.data
    sources = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        raise SystemExit(f"no JPEG images in {image_dir}")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="galaxymorph_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    folder = make_folder(root, sources, args.n)
    old_src = extract(args.old_ref, root) if args.old_ref else None
    arms = [a for a in args.arms.split(",") if a and (a != "old" or old_src)]
    if args.ray and "ray" not in arms:
        arms.append("ray")
    from galaxymorph.models.loading import load_classifier

    pre = load_classifier(args.model, engine="torch").preprocessing
    print(f"model {args.model} ({pre.image_size} px, {pre.framing} framing), {os.cpu_count()} CPU "
          f"cores, batch {args.batch_size}, workers {args.workers or 'auto'}, {args.n} GZ1 JPEGs; "
          f"load average before: "
          f"{os.getloadavg()[0]:.1f}")

    # Export the ONNX graph once first: the timed runs measure the steady state, and the
    # one-off export is reported on its own.
    t0 = time.perf_counter()
    run_arm("onnx", make_folder(root, sources, 64), args.model, root / "warm.csv", args.batch_size,
            False, None)
    print(f"first onnx run on 64 images (graph export if not cached yet): {time.perf_counter() - t0:.1f} s")

    results: dict[str, dict] = {}
    plan = [(a, False) for a in arms] + ([(a, True) for a in arms if a != "notebook"] if args.tta else [])
    for arm, tta in plan:
        name = f"{arm}{' --tta' if tta else ''}"
        results[name] = run_arm(arm, folder, args.model, root / f"{name.replace(' ', '')}.csv",
                                args.batch_size, tta, old_src, args.workers)
        r = results[name]
        print(f"  {name:14s} {r['n'] / r['seconds']:7.0f} img/s  ({r['seconds']:.1f} s wall, "
              f"{r['cpu_seconds']:.1f} s CPU, load {os.getloadavg()[0]:.1f})", flush=True)

    lim = cpu_limit(folder, args.model, min(args.n, 512), args.batch_size, False)
    base = results.get("notebook")
    print(f"\nCPU per image: decode {lim['decode_ms']:.2f} ms (1 thread; with a fixed crop "
          f"instead of the model's framing {lim['fixed_ms']:.2f} ms), ONNX engine "
          f"{lim['engine_ms']:.2f} ms (2 threads) -> limit {lim['limit']:.0f} img/s on "
          f"{os.cpu_count()} cores ({lim['fixed_limit']:.0f} with the fixed crop)")
    print(f"\n{'arm':14s} {'img/s':>7s} {'x notebook':>10s} {'of limit':>8s}")
    for name, r in results.items():
        rate = r["n"] / r["seconds"]
        vs = f"{rate / (base['n'] / base['seconds']):.2f}" if base else "-"
        limit = lim["fixed_limit" if name.startswith(("onnx-fixed", "notebook")) else "limit"]
        print(f"{name:14s} {rate:7.0f} {vs:>10s} {rate / limit:8.2f}")
    print("\nlargest |p - p_ref| between arms, same images (the notebook resizes with PIL):")
    for name in results:
        ref = "torch --tta" if name.endswith("--tta") else "torch"
        if name != ref and ref in results:
            d = max_diff(root / f"{ref.replace(' ', '')}.csv", root / f"{name.replace(' ', '')}.csv")
            print(f"  {name:14s} vs {ref}: {d:.2e}")

    sizes = [int(s) for s in args.mem_sizes.split(",") if s.strip()]
    if sizes:
        print("\npeak memory of predict (default engine):")
    for size in sizes:
        r = run_arm("auto", make_folder(root, sources, size), args.model, root / f"mem_{size}.csv",
                    args.batch_size, False, None)
        print(f"  {r['n']:6d} images: main {r['main_kb'] / 1024:5.0f} MB, largest decoder "
              f"{r['worker_kb'] / 1024:5.0f} MB  ({r['n'] / r['seconds']:.0f} img/s, "
              f"load {os.getloadavg()[0]:.1f})", flush=True)
    if not args.workdir:
        print(f"\n(symlink folders in {root}; delete when done)")


if __name__ == "__main__":
    main()
