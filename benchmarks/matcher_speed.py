"""RegNetMamba-2 forward time per image pair and parameter count (target: <= 1.5 s per 512x512 pair on 2 cores).

    .venv/bin/python benchmarks/matcher_speed.py [--sizes 256 512] [--threads 2] [--repeats 3] [--checkpoint CKPT]
    python benchmarks/matcher_speed.py --device cuda --ssd-backend torch|cuda   (a GPU machine)

Times `Matcher.match` end to end (normalisation, network, coordinate mapping) on real-looking texture, with
the allocator setting the Matcher applies (geomreg/nn/cpu_allocator.py; GEOMREG_CPU_ALLOCATOR=system runs
with malloc as it is, for comparison), and prints the process's peak resident memory.
Random weights are used when no checkpoint is given: the cost of the network does not depend on its weights
except through the number of coarse matches refined by the fine stage, so the fine stage is forced to refine
as many matches as the model ever refines (its cap, CoarseConfig.max_matches; --fine-matches) to keep the
figure honest: the worst case, not the typical one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import time

import cv2
import numpy as np
import torch

from geomreg.matching.api import Matcher, MatcherConfig
from geomreg.matching.coarse import CoarseMatches
from geomreg.matching.guided import GuideConfig
from geomreg.matching.model import RegNetMamba2
from geomreg.matching.polish import PolishedMatcher
from geomreg.nn.mamba2 import MixerConfig


def texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 3)
    return (255 * (img - img.min()) / np.ptp(img)).astype(np.uint8)


def related_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ref, mov): mov is ref's content shifted by (3.3, -2.6) px (a reference point x lies at x + (3.3, -2.6))."""
    big = texture(size + 16, 0)
    M = np.float32([[1, 0, 8 - 3.3], [0, 1, 8 + 2.6]])  # mov(q) = big(q + 8 - shift); ref = big[8:, 8:]
    mov = cv2.warpAffine(big, M, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    return big[8 : 8 + size, 8 : 8 + size].copy(), mov


def cpu_summary() -> dict:
    """The CPU the figures were measured on. The same code ran the shipped weights at 0.94 s per 512 px pair on
    a host whose CPU had AMX and AVX-512 (2026-11-26) and at 1.9-2.05 s on another host:
    oneDNN picks its kernels by instruction set, so a timing means little without it."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": model, "logical_cpus": os.cpu_count(), "isa": isa, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def use_ssd_backend(model: torch.nn.Module, backend: str) -> None:
    """Run every Mamba-2 scan with this backend (the mixers' configs are frozen: replace them)."""
    for block in model.modules():
        if isinstance(getattr(block, "cfg", None), MixerConfig):
            block.cfg = dataclasses.replace(block.cfg, ssd_backend=backend)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="cpu", help="cpu (the target's setting), cuda or auto")
    ap.add_argument("--ssd-backend", choices=("model", "torch", "cuda", "auto"), default="model", help="SSD scan of every block (default: the model's own)")
    ap.add_argument("--fine-window", type=int, default=None, help="fine window side at inference (default: the model's)")
    ap.add_argument("--no-guide", action="store_true", help="one fine pass (MatcherConfig(guide=None)) instead of the guided second one")
    ap.add_argument("--no-consensus", action="store_true", help="guided pass around the MAGSAC guide only (GuideConfig(consensus_rounds=0))")
    ap.add_argument("--polish", action="store_true",
                    help="the default matcher: tie points polished by CFOG (geomreg.matching.polish), on a related pair "
                         "(the moving texture is the reference shifted by (3.3, -2.6) px, so there is something to polish)")
    ap.add_argument(
        "--fine-matches", type=int, default=None, help="matches the fine stage refines when no checkpoint is given (default: the cap, CoarseConfig.max_matches)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = MatcherConfig(guide=None) if args.no_guide else MatcherConfig(guide=GuideConfig(consensus_rounds=0)) if args.no_consensus else MatcherConfig()
    if args.checkpoint:
        m = Matcher.from_checkpoint(args.checkpoint, args.device, config=config)
    else:
        torch.manual_seed(0)
        model = RegNetMamba2()
        forward = model.forward
        n_forced = args.fine_matches or model.cfg.coarse.max_matches

        def forced(*a, **k):  # random weights select ~no matches; refine a fixed number so the cost is realistic
            def pick(pred):
                L = (a[0].shape[-1] // 8) * (a[0].shape[-2] // 8)
                n = min(n_forced, L)
                idx = torch.randperm(L)[:n]
                return CoarseMatches(torch.zeros(n, dtype=torch.long), idx, idx, torch.ones(n))

            return forward(*a, fine_on=pick, **k)

        model.forward = forced  # type: ignore[method-assign]
        m = Matcher(model, args.device, config)
    if args.fine_window:
        m.model.set_fine_window(args.fine_window)
    if args.ssd_backend != "model":
        use_ssd_backend(m.model, args.ssd_backend)
    n_params = sum(p.numel() for p in m.model.parameters())
    matcher = PolishedMatcher(m) if args.polish else m
    rows = []
    for s in args.sizes:
        ref, mov = related_pair(s) if args.polish else (texture(s, 0), texture(s, 1))
        matcher.match(ref, mov)  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            matcher.match(ref, mov)
            times.append(time.perf_counter() - t)
        rows.append({"size": s, "median_s": statistics.median(times), "min_s": min(times)})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    allocator = os.environ.get("GEOMREG_CPU_ALLOCATOR") or "freed memory kept"
    cpu = cpu_summary()
    passes = "one fine pass" if args.no_guide else "guided second fine pass" + ("" if args.no_consensus else ", heatmap consensus")
    passes += ", CFOG polish (related pair)" if args.polish else ""
    if m.device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(m.device)}; SSD backend: {args.ssd_backend}; peak GPU memory {torch.cuda.max_memory_allocated(m.device) / 2**20:.0f} MiB")
    print(f"parameters: {n_params / 1e6:.2f} M; threads: {args.threads}; allocator: {allocator}; {passes}; peak RSS {peak_mb:.0f} MB")
    print(f"CPU: {cpu['cpu']} ({cpu['logical_cpus']} logical CPUs; {', '.join(cpu['isa']) or 'no AVX2'}; torch dispatch {cpu['torch_cpu_capability']})")
    print("| pair size | median s/pair | min s/pair |\n|---|---|---|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['median_s']:.2f} | {r['min_s']:.2f} |")
    t512 = next((r["median_s"] for r in rows if r["size"] == 512), None)
    if t512 is not None:
        print(f"target <= 1.5 s per 512x512 pair: {'PASS' if t512 <= 1.5 else 'FAIL'} ({t512:.2f} s)")
    print(json.dumps({"parameters": n_params, "device": str(m.device), "ssd_backend": args.ssd_backend, "threads": args.threads, "allocator": allocator, "peak_rss_mb": round(peak_mb), **cpu, "rows": rows}))


if __name__ == "__main__":
    main()
