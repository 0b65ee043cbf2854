"""CPU benchmark: Mamba-2 SSD scan vs step recurrence vs softmax attention vs linear attention.

Every (method, length) runs in a fresh subprocess so its peak RSS (``resource.getrusage``'s ``ru_maxrss``)
belongs to that method alone: peak memory is reported as the rise of the high-water mark above the RSS
measured just before the first call (inputs already allocated), i.e. the method's working memory.

Methods (batch 1, H heads of dim P, forward only, ``torch.no_grad``, float32):

* ``ssd``          -- ``geomreg.nn.ssd.ssd_scan`` (pure PyTorch chunked SSD, state size N, G groups);
* ``recurrence``   -- ``geomreg.nn.ssd.ssd_reference`` (one Python step per token);
* ``softmax``      -- ``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal=True``
                      (causal, like the SSD scan; ``--noncausal-softmax`` adds the non-causal variant);
* ``linear``       -- non-causal kernelized linear attention with the elu(x)+1 feature map.

Configurations whose extrapolated time exceeds ``--budget`` seconds per call are not run; they are
reported as "skipped (est ...)" with the extrapolation (linear for the recurrence, quadratic for softmax).

Linearity (the SSD's per-token time must not grow with length): for the encoder's shapes

    python benchmarks/ssd_bench.py --methods ssd --headdim 32 --lengths 4096 16384 65536 --repeats 7

reports per-token times and the growth ratios time(16k)/time(4k), time(64k)/time(16k) with their targets
(<= 4.5 each; per-token time at 64k within 1.5x of that at 4k). Ratios are judged on the minimum of the
repeats, the figure least disturbed by other processes on a shared machine; medians and the process CPU time
per call are reported beside them. Every method runs under the malloc setting the library applies when it
matches or trains (``geomreg/nn/cpu_allocator.py``; ``GEOMREG_CPU_ALLOCATOR=system`` for malloc as it is).

Usage:  python benchmarks/ssd_bench.py [--threads 2] [--lengths 1024 4096 16384 65536]
Writes benchmarks/out/ssd_bench.md and benchmarks/out/ssd_bench.json.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Growth exponent used to extrapolate a method's time from its largest measured length.
GROWTH = {"ssd": 1.0, "recurrence": 1.0, "softmax": 2.0, "softmax_noncausal": 2.0, "linear": 1.0}
LABEL = {
    "ssd": "SSD scan (chunked, torch)",
    "recurrence": "step recurrence",
    "softmax": "softmax attn (SDPA, causal)",
    "softmax_noncausal": "softmax attn (SDPA, non-causal)",
    "linear": "linear attn (elu+1, non-causal)",
}


@dataclass(frozen=True)
class Shape:
    batch: int = 1
    heads: int = 8
    headdim: int = 64
    state: int = 64
    groups: int = 1
    chunk_size: int = 64


@dataclass
class Result:
    method: str
    length: int
    status: str  # "ok", "skipped", "timeout", "error"
    median_s: float | None = None
    min_s: float | None = None
    cpu_min_s: float | None = None  # process CPU time (user + sys, all threads) of the fastest-CPU repeat
    times_s: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    est_s: float | None = None
    note: str = ""


# ---------------------------------------------------------------- worker (runs in a subprocess)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(method: str, L: int, shape: Shape):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    b, H, P, N, G = shape.batch, shape.heads, shape.headdim, shape.state, shape.groups
    if method in ("ssd", "recurrence"):
        from geomreg.nn.ssd import ssd_reference, ssd_scan

        x = torch.randn(b, L, H, P, generator=g)
        dt = F.softplus(torch.randn(b, L, H, generator=g) - 1.0)
        A = -(0.5 + 3.5 * torch.rand(H, generator=g))
        B = torch.randn(b, L, G, N, generator=g) / N**0.5
        C = torch.randn(b, L, G, N, generator=g) / N**0.5
        D = torch.randn(H, generator=g)
        if method == "ssd":
            return lambda: ssd_scan(x, dt, A, B, C, chunk_size=shape.chunk_size, D=D)
        return lambda: ssd_reference(x, dt, A, B, C, D=D)
    q, k, v = (torch.randn(b, H, L, P, generator=g) for _ in range(3))
    if method in ("softmax", "softmax_noncausal"):
        causal = method == "softmax"
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if method == "linear":

        def linear_attention():
            fq, fk = F.elu(q) + 1.0, F.elu(k) + 1.0
            kv = torch.einsum("bhld,bhle->bhde", fk, v)  # [b, h, P, P]: the whole sequence summarised
            z = 1.0 / (torch.einsum("bhld,bhd->bhl", fq, fk.sum(dim=2)) + 1e-6)
            return torch.einsum("bhld,bhde->bhle", fq, kv) * z[..., None]

        return linear_attention
    raise ValueError(f"unknown method {method!r}")


def worker(method: str, L: int, shape: Shape, threads: int, repeats: int, budget: float) -> dict:
    import torch

    from geomreg.nn.cpu_allocator import keep_freed_memory

    torch.set_num_threads(threads)
    # Every method runs under the malloc setting the Matcher and the trainer apply (GEOMREG_CPU_ALLOCATOR=system
    # turns it off): otherwise each call's tensors above 32 MiB are page-faulted in afresh.
    keep_freed_memory()
    fn = _build(method, L, shape)
    base = _rss_mib()
    times, cpu = [], []
    with torch.no_grad():
        t0 = time.perf_counter()
        fn()  # warmup (also counted in the memory peak)
        warm = time.perf_counter() - t0
        # Fewer repeats when one call is slow, so one configuration stays within a few budgets.
        n = max(1, min(repeats, int(2 * budget / max(warm, 1e-9))))
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"times_s": times, "cpu_s": cpu, "warmup_s": warm, "peak_mib": max(0.0, peak - base)}


# ---------------------------------------------------------------- driver


def run_one(method: str, L: int, args: argparse.Namespace) -> Result:
    cmd = [sys.executable, __file__, "--worker", method, str(L), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--budget", str(args.budget), "--chunk-size", str(args.chunk_size),
           "--heads", str(args.heads), "--headdim", str(args.headdim), "--state", str(args.state)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return Result(method, L, "timeout", note=f"> {args.timeout:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return Result(method, L, "error", note=f"exit {proc.returncode}: {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Result(method, L, "ok", statistics.median(data["times_s"]), min(data["times_s"]), min(data["cpu_s"]),
                  data["times_s"], data["peak_mib"])


def estimate(method: str, L: int, done: list[Result]) -> float | None:
    """Extrapolate from the longest measured length of this method (None if nothing measured)."""
    measured = [r for r in done if r.method == method and r.status == "ok"]
    if not measured:
        return None
    ref = max(measured, key=lambda r: r.length)
    return ref.median_s * (L / ref.length) ** GROWTH[method]


def should_skip(method: str, L: int, est: float | None, args: argparse.Namespace) -> str | None:
    if method == "recurrence" and L > args.max_recurrence_len:
        return f"L > {args.max_recurrence_len}"
    if est is not None and est > args.budget:
        return f"est > budget {args.budget:.0f} s"
    return None


def fmt_time(r: Result) -> str:
    if r.status == "ok":
        return f"{r.median_s * 1e3:,.1f} ms" if r.median_s < 1 else f"{r.median_s:,.2f} s"
    if r.status == "skipped":
        return f"skipped (est {r.est_s:,.0f} s)" if r.est_s is not None else "skipped"
    return f"{r.status} ({r.note})"


def fmt_mem(r: Result) -> str:
    return f"{r.peak_mib:,.0f}" if r.peak_mib is not None else "-"


def render(results: list[Result], lengths: list[int], methods: list[str], targets: list[tuple[str, bool, str]],
           meta: dict) -> str:
    by = {(r.method, r.length): r for r in results}
    head = "| method | " + " | ".join(f"L={L // 1024}k" if L % 1024 == 0 else f"L={L}" for L in lengths) + " |"
    sep = "|---" * (len(lengths) + 1) + "|"
    lines = [
        f"SSD benchmark, {meta['date']}: torch {meta['torch']}, {meta['threads']} threads, {meta['cpu']}; "
        f"batch {meta['shape']['batch']}, H={meta['shape']['heads']}, P={meta['shape']['headdim']}, "
        f"N={meta['shape']['state']}, G={meta['shape']['groups']}, chunk_size={meta['shape']['chunk_size']}, "
        f"float32, forward only; geomreg/nn/ssd.py sha256 {meta['ssd_py_sha256']}.",
        "",
        "Time (median of repeats after a warmup call):",
        "",
        head,
        sep,
    ]
    for m in methods:
        lines.append(f"| {LABEL[m]} | " + " | ".join(fmt_time(by[(m, L)]) for L in lengths) + " |")
    lines += ["", "Fastest repeat, and per token (min of repeats; process CPU time per call in brackets):", "", head, sep]
    for m in methods:
        cells = []
        for L in lengths:
            r = by[(m, L)]
            cells.append(f"{r.min_s * 1e3:,.1f} ms, {r.min_s / L * 1e6:.2f} us/token (cpu {r.cpu_min_s / L * 1e6:.2f})"
                         if r.status == "ok" else "-")
        lines.append(f"| {LABEL[m]} | " + " | ".join(cells) + " |")
    lines += ["", "Peak memory (MiB, rise of peak RSS over the inputs, fresh process per cell):", "", head, sep]
    for m in methods:
        lines.append(f"| {LABEL[m]} | " + " | ".join(fmt_mem(by[(m, L)]) for L in lengths) + " |")
    lines += ["", "Targets:", ""]
    for name, ok, detail in targets:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {name} ({detail})")
    return "\n".join(lines) + "\n"


def check_targets(results: list[Result], methods: list[str]) -> list[tuple[str, bool, str]]:
    by = {(r.method, r.length): r for r in results}

    def t(m: str, L: int) -> float | None:
        r = by.get((m, L))
        return r.median_s if r is not None and r.status == "ok" else None

    def fastest(m: str, L: int) -> float | None:
        r = by.get((m, L))
        return r.min_s if r is not None and r.status == "ok" else None

    out = []
    ssd16, sm16 = t("ssd", 16384), t("softmax", 16384)
    if "softmax" in methods:
        if ssd16 and sm16:
            out.append(("L=16k: SSD >= 5x faster than causal softmax attention", sm16 / ssd16 >= 5,
                        f"speedup {sm16 / ssd16:.1f}x (medians)"))
        else:
            out.append(("L=16k: SSD >= 5x faster than causal softmax attention", False, "not measured"))
    # Linearity in L, judged on the fastest repeat (a shared machine inflates medians unevenly).
    f4, f16, f64 = fastest("ssd", 4096), fastest("ssd", 16384), fastest("ssd", 65536)
    m4, m16, m64 = t("ssd", 4096), t("ssd", 16384), t("ssd", 65536)
    for name, lo, hi, mlo, mhi in (("SSD time(16k) / time(4k) <= 4.5", f4, f16, m4, m16),
                                   ("SSD time(64k) / time(16k) <= 4.5", f16, f64, m16, m64)):
        if lo and hi:
            out.append((name, hi / lo <= 4.5, f"min-of-repeats ratio {hi / lo:.2f}; medians {mhi / mlo:.2f}"))
        else:
            out.append((name, False, "not measured"))
    if f4 and f64:
        per = (f64 / 65536) / (f4 / 4096)
        out.append(("SSD per-token time at 64k within 1.5x of 4k", per <= 1.5,
                    f"{f64 / 65536 * 1e6:.2f} vs {f4 / 4096 * 1e6:.2f} us/token, x{per:.2f}; "
                    f"medians x{(m64 / 65536) / (m4 / 4096):.2f}"))
    else:
        out.append(("SSD per-token time at 64k within 1.5x of 4k", False, "not measured"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--methods", nargs="+", default=["ssd", "recurrence", "softmax", "linear"], choices=list(LABEL))
    p.add_argument("--noncausal-softmax", action="store_true", help="also time non-causal SDPA")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=Shape.chunk_size)
    p.add_argument("--heads", type=int, default=Shape.heads)
    p.add_argument("--headdim", type=int, default=Shape.headdim, help="P (the encoder's 1/8 scale: 32)")
    p.add_argument("--state", type=int, default=Shape.state)
    p.add_argument("--budget", type=float, default=60.0, help="skip a cell whose estimated time per call exceeds this (s)")
    p.add_argument("--timeout", type=float, default=600.0, help="kill a cell's subprocess after this (s)")
    p.add_argument("--max-recurrence-len", type=int, default=4096)
    p.add_argument("--out", type=Path, default=OUT_DIR)
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "L"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shape = Shape(heads=args.heads, headdim=args.headdim, state=args.state, chunk_size=args.chunk_size)

    if args.worker:
        res = worker(args.worker[0], int(args.worker[1]), shape, args.threads, args.repeats, args.budget)
        print(json.dumps(res))
        return 0

    import torch

    # The benchmarked source is hashed before and after: a concurrent edit would mix two versions.
    ssd_src = REPO_ROOT / "geomreg" / "nn" / "ssd.py"
    src_hash = hashlib.sha256(ssd_src.read_bytes()).hexdigest()[:12]
    methods = list(args.methods) + (["softmax_noncausal"] if args.noncausal_softmax else [])
    lengths = sorted(args.lengths)
    results: list[Result] = []
    for m in methods:
        for L in lengths:
            est = estimate(m, L, results)
            reason = should_skip(m, L, est, args)
            if reason:
                r = Result(m, L, "skipped", est_s=est, note=reason)
            else:
                r = run_one(m, L, args)
            results.append(r)
            print(f"{m:18s} L={L:6d}  {fmt_time(r):>24s}  peak {fmt_mem(r):>7s} MiB", flush=True)

    targets = check_targets(results, methods)
    if hashlib.sha256(ssd_src.read_bytes()).hexdigest()[:12] != src_hash:
        print("WARNING: geomreg/nn/ssd.py changed during the run; SSD timings may mix two versions", file=sys.stderr)
        src_hash += " (changed during run)"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    meta = {
        "date": dt_.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": cpu,
        "shape": asdict(shape),
        "ssd_py_sha256": src_hash,
        "command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT)] + (argv if argv is not None else sys.argv[1:])),
    }
    md = render(results, lengths, methods, targets, meta)
    print()
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("ssd_bench.md", md),
                       ("ssd_bench.json", json.dumps({"meta": meta, "results": [asdict(r) for r in results],
                                                      "targets": [dict(name=n, passed=ok, detail=d) for n, ok, d in targets]},
                                                     indent=2))):
        tmp = args.out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out / name)  # never leave a half-written report
    return 0 if all(ok for _, ok, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
