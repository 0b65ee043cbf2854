"""Fastest SSD chunk length per scale for a RegNetMamba-2 model on this machine (CPU inference).

    .venv/bin/python benchmarks/ssd_chunks.py [--checkpoint CKPT] [--size 512] [--threads 2] [--chunks 8 16 32 64 128]

The chunk length of the chunked SSD changes how the scan is computed, not its result: inside a chunk the
quadratic form costs about T x (N + P) per token, between chunks the recurrence costs about P x N / T, so the
best T depends on each scale's head size P, state size N and on the machine. For every scale this times the
scale's real ``ssd_scan_grouped`` call (both images, the four direction groups, the model's heads and states) at each
candidate, then the whole matcher at the model's own chunk lengths and at the fastest ones, and checks that the
matches agree. Prints a table and the line to pass to ``scripts/export_weights.py --chunk-sizes``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmarks.matcher_speed import texture  # noqa: E402
from geomreg.matching.api import Matcher  # noqa: E402
from geomreg.matching.weights import PACKAGED_WEIGHTS, load_checkpoint  # noqa: E402
from geomreg.nn.scan2d import N_DIRECTIONS  # noqa: E402
from geomreg.nn.cpu_allocator import keep_freed_memory  # noqa: E402
from geomreg.nn.ssd import ssd_scan_grouped  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scale_inputs(model, scale: int, size: int, batch: int = 2) -> tuple:
    """Random inputs of the shapes the scale's SSD sees for a size x size pair (batch: both images), in the
    direction-major layout the 2-D scan hands to ``ssd_scan_grouped``."""
    enc = model.cfg.encoder
    side = size // (2 << scale)
    heads = enc.expands[scale] * enc.dims[scale] // enc.headdims[scale]
    L, P, N, R = side * side, enc.headdims[scale], enc.d_states[scale], heads // N_DIRECTIONS
    g = torch.Generator().manual_seed(scale)
    x = torch.randn(batch, N_DIRECTIONS, R, L, P, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(batch, N_DIRECTIONS, R, L, generator=g) - 2)
    A = -torch.rand(heads, generator=g) * 8 - 1
    B, C = (torch.randn(batch, N_DIRECTIONS, L, N, generator=g) for _ in range(2))
    return x, dt, A, B, C, torch.ones(heads)


def sweep(model, size: int, chunks: list[int], repeats: int) -> list[dict[int, float]]:
    rows = []
    with torch.no_grad():
        for scale in range(3):
            x, dt, A, B, C, D = scale_inputs(model, scale, size)
            rows.append({c: median_time(lambda c=c: ssd_scan_grouped(x, dt, A, B, C, chunk_size=c, D=D), repeats) for c in chunks})
    return rows


def matcher_time(m: Matcher, ref: np.ndarray, mov: np.ndarray, repeats: int):
    result = m.match(ref, mov)
    return median_time(lambda: m.match(ref, mov), repeats), result


def compare_matches(a, b) -> tuple[int, float]:
    """Matches of two runs paired by their reference position: how many both have, and how far apart they lie.

    Rounding can flip a near-tie in the mutual-nearest-neighbour test or the per-pair cap, so the two lists
    need not line up one for one."""
    where = {tuple(np.round(xy, 3)): k for k, xy in enumerate(a.ref_xy)}
    pairs = [(where[key], k) for k, key in enumerate(map(tuple, np.round(b.ref_xy, 3))) if key in where]
    if not pairs:
        return 0, float("nan")
    ia, ib = map(list, zip(*pairs))
    return len(pairs), float(np.abs(a.mov_xy[ia] - b.mov_xy[ib]).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=PACKAGED_WEIGHTS)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the Matcher runs: the sweep would otherwise time page faults
    model = load_checkpoint(args.checkpoint)
    own = model.cfg.encoder.chunk_sizes
    rows = sweep(model, args.size, args.chunks, args.repeats)
    best = tuple(min(r, key=r.get) for r in rows)
    print(f"SSD scan per scale, {args.size} px pair, {args.threads} threads (median of {args.repeats}, ms); "
          f"model chunk lengths {own}")
    print("| scale | " + " | ".join(f"T={c}" for c in args.chunks) + " |")
    print("|---" * (len(args.chunks) + 1) + "|")
    for name, r in zip(("1/2", "1/4", "1/8"), rows):
        print(f"| {name} | " + " | ".join(f"{1e3 * r[c]:.0f}" for c in args.chunks) + " |")

    ref, mov = texture(args.size, 0), texture(args.size, 1)
    m = Matcher(model, "cpu")
    t_own, r_own = matcher_time(m, ref, mov, args.repeats)
    model.set_chunk_sizes(best)
    t_best, r_best = matcher_time(m, ref, mov, args.repeats)
    shared, diff = compare_matches(r_own, r_best)
    print(f"matcher per pair: {t_own:.2f} s at {own}, {t_best:.2f} s at {best}; matches {len(r_own.ref_xy)} / "
          f"{len(r_best.ref_xy)}, {shared} in both (same reference cell), largest position difference there {diff:.1e} px")
    print(f"--chunk-sizes {','.join(map(str, best))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
