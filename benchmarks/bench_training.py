"""Training throughput: the real pipeline (files on disk -> decode cache -> augmenting loader ->
optimizer step) against the same model on pre-loaded tensors (target ratio >= 0.8), and the
new channels-last layout beside the old contiguous one, in one run (target >= 1.8x), and two
candidates on top of channels-last (bf16 autocast, fused AdamW; ``--compile``: torch.compile),
kept only if they pay.

    .venv/bin/python benchmarks/bench_training.py --data ../shared/data/gz1 --label-map gz1-4 \
        --model cnn4-wide --image-size 64 --crop 0.5 --steps 60
    .venv/bin/python benchmarks/bench_training.py --model mobilenetv2 --image-size 96 --crop 0.35

The first figure counts the one-off decode of every image (cold cache) spread over one epoch;
the second is the steady state (warm cache), which is what every later epoch costs.
``--survey-augment`` turns on the survey augmentations (zoom, PSF, stretch, colour, noise,
JPEG) of the built-in model; the last lines time the augmentation alone, per image, with and
without them (mean of 5 repeats, 95% interval; ``--augment-only`` prints just those).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def _steps(module, batches, n_steps: int, bf16: bool = False, fused: bool = False) -> tuple[int, float]:
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == 2:  # skip warm-up steps (allocator, oneDNN primitive creation)
            start, seen = time.perf_counter(), 0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module._loss(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if i + 1 >= n_steps + 2:
            break
    return seen, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/gz1")
    ap.add_argument("--label-map", default="gz1-4")
    ap.add_argument("--model", default="cnn4-wide")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--survey-augment", action="store_true")
    ap.add_argument("--framing", default="fixed", choices=["fixed", "auto"])
    ap.add_argument("--compile", action="store_true",
                    help="Also time torch.compile (inductor) on top of channels-last (about a minute to compile).")
    ap.add_argument("--augment-only", action="store_true", help="Only time the augmentations.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.augment_only:
        _augment_rates(args.image_size)
        return

    from galaxymorph.models.network import build_network
    from galaxymorph.training.config import TrainConfig, survey_augment_overrides
    from galaxymorph.training.datamodule import GalaxyDataModule, open_training_data
    from galaxymorph.training.module import ClassifierModule

    with tempfile.TemporaryDirectory() as cache:
        cfg = TrainConfig(data=args.data, label_map=args.label_map, model=args.model,
                          image_size=args.image_size, crop=args.crop, batch_size=args.batch_size,
                          framing=args.framing, progress=False, cache=cache,  # cold cache
                          **(survey_augment_overrides() if args.survey_augment else {}))
        t0 = time.perf_counter()
        dm = GalaxyDataModule(cfg, open_training_data(cfg))
        folds = dm.setup()
        decode_s = time.perf_counter() - t0
        n_train = len(folds.positions["train"])
        k = dm.dataset.num_classes
        x = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=torch.uint8)
        y = torch.randint(0, k, (args.batch_size,))
        rates: dict[tuple[str, bool], float] = {}
        # Old (contiguous) and new (channels-last) alternate, twice, so that a change in the
        # machine's load hits both; each figure is the mean of its two runs.
        for _ in range(2):
            for cl in (False, True):
                module = ClassifierModule(build_network(args.model, k), k, channels_last=cl).train()
                seen, secs = _steps(module, iter(lambda: (x, y), None), args.steps)
                rates[("bare", cl)] = rates.get(("bare", cl), 0) + seen / secs / 2
                module = ClassifierModule(build_network(args.model, k), k, channels_last=cl).train()
                seen, secs = _steps(module, dm.train_dataloader(), args.steps)
                rates[("pipeline", cl)] = rates.get(("pipeline", cl), 0) + seen / secs / 2
            # Candidates on top of channels-last, bare steps: bf16 autocast, fused AdamW.
            arms = [("bf16", {"bf16": True}), ("fused", {"fused": True})]
            for arm, kw in arms + ([("compile", {})] if args.compile else []):
                module = ClassifierModule(build_network(args.model, k), k).train()
                if arm == "compile":  # inductor's warm-up (compiling) is left out of the rate
                    module.net = torch.compile(module.net)
                seen, secs = _steps(module, iter(lambda: (x, y), None), args.steps, **kw)
                rates[("bare", arm)] = rates.get(("bare", arm), 0) + seen / secs / 2

    print(f"model {args.model} @ {args.image_size}px, batch {args.batch_size}, {args.threads} threads, "
          f"{n_train} training images; load average {os.getloadavg()[0]:.1f}")
    print(f"decode + crop of all {len(dm.dataset)} images once: {decode_s:.1f} s")
    for cl, name in ((False, "old: contiguous"), (True, "new: channels-last")):
        bare, pipeline = rates[("bare", cl)], rates[("pipeline", cl)]
        epoch_pipeline = n_train / (n_train / pipeline + decode_s)
        print(f"{name}")
        print(f"  pre-loaded tensors          : {bare:8.1f} img/s")
        print(f"  real pipeline, warm cache   : {pipeline:8.1f} img/s   ratio {pipeline / bare:.2f} (target >= 0.8)")
        print(f"  first epoch incl. decoding  : {epoch_pipeline:8.1f} img/s   ratio {epoch_pipeline / bare:.2f}")
    for kind in ("bare", "pipeline"):
        print(f"new / old, {kind:8s}: {rates[(kind, True)] / rates[(kind, False)]:.2f}x (target >= 1.8)")
    for arm, name in (("bf16", "bf16 autocast"), ("fused", "fused AdamW"),
                      *((("compile", "torch.compile"),) if args.compile else ())):
        print(f"channels-last + {name:13s}: {rates[('bare', arm)]:8.1f} img/s pre-loaded, "
              f"{rates[('bare', arm)] / rates[('bare', True)]:.2f}x channels-last alone")
    _augment_rates(args.image_size)


def _augment_rates(size: int) -> None:
    """Images/s of the augmentation alone (one core), symmetries only vs. survey augmentations."""
    import numpy as np

    from galaxymorph.data.transforms import SURVEY_AUGMENT, TrainAugment

    x = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    for name, survey in (("symmetries + zoom/shift", None), ("+ survey augmentations", SURVEY_AUGMENT)):
        aug = TrainAugment(4, survey=survey, seed=0)
        rates = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(200):
                aug(x, 0)
            rates.append(200 / (time.perf_counter() - t0))
        m, half = float(np.mean(rates)), 1.96 * float(np.std(rates, ddof=1)) / np.sqrt(len(rates))
        print(f"augmentation, {name:24s}: {m:8.0f} img/s  [{m - half:.0f}, {m + half:.0f}]")


if __name__ == "__main__":
    main()
