"""GPU check and timing: mamba-ssm's fused SSD kernel against our pure-PyTorch SSD (the reference).

Runs only where CUDA and mamba-ssm are present (a lent GPU machine; see scripts/gpu_train.md). Three parts:

1. ``ssd_scan(backend="cuda")`` vs ``backend="torch"`` on the shapes the encoder uses at each scale and a
   wide generic shape: relative error of y, the final state and the gradients; forward and forward+backward
   time of each (CUDA events, median of ``--repeats``).
2. The whole network on a pair of ``--size`` px images with every SSD switched to the kernel ("auto") and
   to pure PyTorch: the relative difference of the fused fine features, and the forward time of each.
   Shapes the kernel cannot run are reported with the kernel's error, not hidden.

Usage:  python benchmarks/ssd_cuda.py [--size 512] [--repeats 20] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geomreg.matching.config import EncoderConfig  # noqa: E402
from geomreg.matching.model import RegNetMamba2  # noqa: E402
from geomreg.nn.ssd import cuda_kernel_available, ssd_scan  # noqa: E402


def encoder_shapes(size: int) -> list[dict]:
    """(batch, length, heads, headdim, state, chunk) of the encoder's SSD at 1/2, 1/4, 1/8 for a size px pair."""
    e = EncoderConfig()
    out = []
    for i, stride in enumerate((2, 4, 8)):
        heads = e.dims[i] * e.expands[i] // e.headdims[i]
        out.append(dict(name=f"encoder 1/{stride}", b=2, L=(size // stride) ** 2, h=heads, p=e.headdims[i], n=e.d_states[i], chunk=e.chunk_sizes[i]))
    out.append(dict(name="generic", b=2, L=16384, h=8, p=64, n=64, chunk=64))
    return out


def timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def compare_scan(s: dict, repeats: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    dev = torch.device("cuda")
    b, L, h, p, n = s["b"], s["L"], s["h"], s["p"], s["n"]
    x = torch.randn(b, L, h, p, device=dev, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(b, L, h, device=dev, generator=g) - 2)
    A = -torch.rand(h, device=dev, generator=g) - 0.5
    B = torch.randn(b, L, 1, n, device=dev, generator=g)
    C = torch.randn(b, L, 1, n, device=dev, generator=g)
    D = torch.randn(h, device=dev, generator=g)
    row = dict(s)
    try:
        outs, grads = {}, {}
        for backend in ("torch", "cuda"):
            leaves = [t.clone().requires_grad_(True) for t in (x, dt, B, C)]
            y, state = ssd_scan(*leaves[:2], A, *leaves[2:], chunk_size=s["chunk"], D=D, return_final_state=True, backend=backend)
            (y.square().mean() + state.square().mean()).backward()
            outs[backend] = (y.detach(), state.detach())
            grads[backend] = [t.grad for t in leaves]

            def fwd(backend=backend):
                with torch.no_grad():
                    ssd_scan(x, dt, A, B, C, chunk_size=s["chunk"], D=D, backend=backend)

            def fwd_bwd(backend=backend):
                xs = x.clone().requires_grad_(True)
                ssd_scan(xs, dt, A, B, C, chunk_size=s["chunk"], D=D, backend=backend).sum().backward()

            row[f"{backend}_fwd_s"] = timed(fwd, repeats)
            row[f"{backend}_fwd_bwd_s"] = timed(fwd_bwd, repeats)
        row["rel_err_y"] = rel(outs["cuda"][0], outs["torch"][0])
        row["rel_err_state"] = rel(outs["cuda"][1], outs["torch"][1])
        row["rel_err_grad_max"] = max(rel(a, b) for a, b in zip(grads["cuda"], grads["torch"]))
    except Exception as exc:  # the kernel's own message is the finding
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    return row


def set_backend(model: torch.nn.Module, backend: str) -> None:
    for m in model.modules():
        cfg = getattr(m, "cfg", None)
        if cfg is not None and hasattr(cfg, "ssd_backend") and hasattr(cfg, "chunk_size"):
            m.cfg = replace(cfg, ssd_backend=backend)


def compare_model(size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = RegNetMamba2().cuda().eval()
    a = torch.rand(1, 1, size, size, device="cuda")
    b = torch.rand(1, 1, size, size, device="cuda")
    fused = {}
    model.msf.register_forward_hook(lambda _m, _i, out: fused.__setitem__("f", out.detach()))
    row: dict = {"size": size}
    for backend in ("torch", "auto"):
        set_backend(model, backend)
        try:
            with torch.no_grad():
                model(a, b)
                row[f"{backend}_features"] = fused["f"]
                row[f"{backend}_forward_s"] = timed(lambda: model(a, b), repeats)
        except Exception as exc:
            row[f"{backend}_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if "torch_features" in row and "auto_features" in row:
        row["rel_diff_fine_features"] = rel(row["auto_features"], row["torch_features"])
    row.pop("torch_features", None)
    row.pop("auto_features", None)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--shapes", default="", help='comma-separated shape names to run (e.g. "encoder 1/8,generic"; default: all)')
    ap.add_argument("--no-model", action="store_true", help="skip the whole-encoder comparison (Triton compiles each new shape: ~1 min)")
    args = ap.parse_args()
    wanted = {n.strip() for n in args.shapes.split(",") if n.strip()}
    if not cuda_kernel_available():
        sys.exit("ssd_cuda: needs CUDA and an importable mamba-ssm (pip install geomreg[gpu])")
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "scans": [], "model": None}
    for s in encoder_shapes(args.size):
        if wanted and s["name"] not in wanted:
            continue
        row = compare_scan(s, args.repeats)
        report["scans"].append(row)
        print(json.dumps(row), flush=True)
    if not args.no_model:
        report["model"] = compare_model(args.size, args.repeats)
        print(json.dumps(report["model"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
