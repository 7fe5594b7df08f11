"""Benchmark row-by-row reads of a gzip-chunked Galaxy10-style HDF5 file.

The decode cache and ``predict`` read an ``H5Source`` one row at a time. With 16-image gzip
chunks of 256 px cutouts (3 MiB a chunk, plausible for the real Galaxy10 file), a row read that
finds no cached chunk decompresses the whole chunk again; the source used to look
``images`` up again for every row, and the chunk cache (which belongs to an open dataset)
went with it. Prints ms per row for that old way and for ``H5Source`` (held dataset, sized chunk
cache), mean and 95% interval over repeats, and their ratio.

    python benchmarks/bench_h5_reads.py                 # 256 rows, 256 px, 16-row chunks
    python benchmarks/bench_h5_reads.py --rows 512 --size 128 --chunk 32 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_file(path: Path, rows: int, size: int, chunk: int) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    # Smooth blobs plus noise: compresses like real cutouts, not like zeros.
    yy, xx = np.mgrid[0:size, 0:size]
    blob = (200 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size * 2)))[..., None]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", shape=(rows, size, size, 3), dtype=np.uint8,
                              chunks=(chunk, size, size, 3), compression="gzip")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ds[start:start + n] = np.clip(blob + rng.normal(0, 8, (n, size, size, 3)), 0, 255)
        f.create_dataset("ans", data=np.arange(rows) % 10)
    return path


def per_row_ms(read, rows: int) -> float:
    start = time.perf_counter()
    for i in range(rows):
        read(i)
    return 1000 * (time.perf_counter() - start) / rows


def interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{mean:.2f} ms (95% interval {mean - half:.2f}-{mean + half:.2f}, n={len(values)})"


def main() -> None:
    import h5py

    from galaxymorph.data.sources import H5Source

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp) / "g10.h5", args.rows, args.size, args.chunk)
        default, sized = [], []  # old way, H5Source
        for _ in range(args.repeats):
            with h5py.File(path, "r") as f:  # the old way: `images` looked up for every row
                default.append(per_row_ms(lambda i, f=f: f["images"][i], args.rows))
            src = H5Source(path, [str(c) for c in range(10)], "h5")
            sized.append(per_row_ms(src.read, args.rows))
            src._file().close()
    chunk_mib = args.chunk * args.size * args.size * 3 / 2**20
    print(f"{args.rows} rows of {args.size} px, gzip chunks of {args.chunk} rows ({chunk_mib:.1f} MiB)")
    print(f"dataset looked up per row (old): {interval(default)} per row")
    print(f"H5Source (held, sized cache):    {interval(sized)} per row")
    print(f"speed-up: {statistics.fmean(default) / statistics.fmean(sized):.1f}x")


if __name__ == "__main__":
    main()
