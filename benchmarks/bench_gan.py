"""Throughput of one GAN training step (real images per second), as ``galaxymorph gan train`` runs it:
class-balanced batch draw, random symmetry, DiffAugment, one D and one G update, EMA.

    .venv/bin/python benchmarks/bench_gan.py --image-size 64 --channels 32 --threads 2

Pixels are random (speed does not depend on content). Other processes on the machine share
its cores; the load average is printed so a number can be judged.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--channels", type=int, nargs="+", default=[32])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--diffaugment", default="color,translation,cutout")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import numpy as np
    import torch

    from galaxymorph.generative.augment import parse_policy, random_symmetry
    from galaxymorph.generative.ema import make_ema
    from galaxymorph.generative.losses import get_losses
    from galaxymorph.generative.module import train_step
    from galaxymorph.generative.networks import Discriminator, Generator, count_parameters
    from galaxymorph.runtime import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    s, b, k = args.image_size, args.batch_size, 4
    images = torch.randint(0, 256, (2000, 3, s, s), dtype=torch.uint8, device=device)
    labels = torch.randint(k, (2000,), device=device)
    weights = torch.ones(2000, dtype=torch.float64)
    d_loss, g_loss = get_losses("hinge")
    policy = parse_policy(args.diffaugment)
    for ch in args.channels:
        torch.manual_seed(0)
        G, D = Generator(k, s, base_channels=ch).to(device), Discriminator(k, s, base_channels=ch).to(device)
        ema = make_ema(G)
        opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9), foreach=True)
        opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9), foreach=True)
        times = []
        for i in range(args.steps + 3):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            idx = torch.multinomial(weights, b, replacement=True).to(device)
            real, y = random_symmetry(images[idx].float().div(127.5).sub(1), labels[idx])
            train_step(G, D, ema, opt_g, opt_d, [(real, y)], policy, d_loss, g_loss)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:  # warm-up: kernel selection, allocator
                times.append(time.perf_counter() - t0)
        rate = b / np.median(times)
        print(f"{s}px  channels {ch:>3}  G {count_parameters(G) / 1e6:.2f}M  D {count_parameters(D) / 1e6:.2f}M"
              f"  batch {b}  threads {torch.get_num_threads()}  {device}:  {rate:.0f} real img/s "
              f"({1000 * np.median(times):.0f} ms/step)  load avg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
