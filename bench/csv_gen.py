"""Synthetic perception-layer CSV files (like the seed's 500k-row sample) for benchmarks and tests.

    .venv/bin/python bench/csv_gen.py OUT.csv[.gz] [--rows N] [--seed S] [--bad-every K] [--no-gps-every K]

Rows look like the seed's: frames at 30 fps, two detections every 3 frames, stop signs and traffic
lights, a drive heading north-east from Toronto. `--bad-every K` makes every K-th row malformed (one
of a few kinds, each rejected by `edge ingest-csv`); `--no-gps-every K` leaves the GPS fields empty.
Deterministic for a seed; `.gz` names are gzip-compressed.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HEADER = "frame_number,timestamp_sec,u,v,confidence,class_name,vehicle_lat,vehicle_lon,heading"
CLASSES = ("stop sign", "traffic light")
BAD_ROWS = (
    "{f},{t},abc,630.06,0.5,stop sign,43.79,-79.31,45.0",  # bad number
    "{f},{t},1737.28,630.06,1.5,stop sign,43.79,-79.31,45.0",  # confidence out of range
    "{f},{t},1737.28,630.06,0.5,stop sign,93.79,-79.31,45.0",  # latitude out of range
    "{f},{t},1737.28,630.06,0.5,,43.79,-79.31,45.0",  # empty class name
    "{f},{t},1737.28,630.06,0.5,stop sign,43.79",  # missing fields
)


def rows(n: int, seed: int = 1, bad_every: int = 0, no_gps_every: int = 0, block: int = 100_000) -> Iterator[str]:
    """Text of the data rows, in blocks of up to `block` lines, each ending with a newline."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, block):
        m = min(block, n - start)
        i = np.arange(start, start + m)
        frame = (i // 2) * 3 + 75
        t = frame / 30.0
        u = rng.uniform(0, 1920, m)
        v = rng.uniform(0, 1080, m)
        conf = rng.uniform(0.25, 1.0, m)
        cls = rng.integers(0, len(CLASSES), m)
        lat = 43.79 + i * 1e-6
        lon = -79.314 + i * 1e-6
        heading = np.round((45.0 + i * 0.01) % 360.0, 1) % 360.0
        lines = []
        for k in range(m):
            row = start + k + 1
            if bad_every and row % bad_every == 0:
                lines.append(BAD_ROWS[(row // bad_every) % len(BAD_ROWS)].format(f=frame[k], t=f"{t[k]:.3f}"))
            elif no_gps_every and row % no_gps_every == 0:
                lines.append(f"{frame[k]},{t[k]:.3f},{u[k]:.2f},{v[k]:.2f},{conf[k]:.4f},{CLASSES[cls[k]]},,,")
            else:
                lines.append(
                    f"{frame[k]},{t[k]:.3f},{u[k]:.2f},{v[k]:.2f},{conf[k]:.4f},{CLASSES[cls[k]]},"
                    f"{lat[k]:.6f},{lon[k]:.6f},{heading[k]:.1f}"
                )
        yield "\n".join(lines) + "\n"


def write_csv(path: str | Path, n: int, *, seed: int = 1, bad_every: int = 0, no_gps_every: int = 0) -> Path:
    """Write a header and `n` rows to `path` (gzip when it ends in .gz); returns the path."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        fh.write(HEADER + "\n")
        for text in rows(n, seed, bad_every, no_gps_every):
            fh.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="file to write (.gz: gzip)")
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bad-every", type=int, default=0, help="every K-th row malformed (0: none)")
    p.add_argument("--no-gps-every", type=int, default=0, help="every K-th row without GPS (0: none)")
    args = p.parse_args(argv)
    path = write_csv(args.out, args.rows, seed=args.seed, bad_every=args.bad_every, no_gps_every=args.no_gps_every)
    print(f"{path}: {args.rows} rows, {path.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
