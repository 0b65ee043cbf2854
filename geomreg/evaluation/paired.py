"""Paired comparison of two methods on the same instances: who registers what the other does not.

Why: success rates over 20-40 instances per modality differ by one or two instances between methods, and a
rate alone cannot say whether that is a difference or chance. Every method of a run sees the same
instances, so each instance is a paired trial; the instances where exactly one of the two succeeds decide
(McNemar's test, here as its exact form: a two-sided sign test on those discordant instances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from geomreg.evaluation.report import ALL
from geomreg.evaluation.runner import InstanceRecord


@dataclass(frozen=True)
class PairedCount:
    modality: str
    method: str
    peer: str
    threshold_px: float
    only_method: int  # instances the method registers within threshold_px and the peer does not
    only_peer: int
    both: int
    neither: int
    p_value: float  # exact two-sided sign test on only_method vs only_peer (1.0 when both are 0)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses at p = 1/2 (McNemar's exact test)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def _key(r: InstanceRecord) -> tuple:
    return (r.modality, r.pair_id, r.seed, r.instance)


def _count(modality: str, method: str, peer: str, mine: dict, theirs: dict, threshold_px: float) -> PairedCount:
    shared = sorted(set(mine) & set(theirs))
    a = [mine[k].grid_rmse <= threshold_px for k in shared]
    b = [theirs[k].grid_rmse <= threshold_px for k in shared]
    only_m = sum(x and not y for x, y in zip(a, b))
    only_p = sum(y and not x for x, y in zip(a, b))
    both = sum(x and y for x, y in zip(a, b))
    return PairedCount(modality, method, peer, threshold_px, only_m, only_p, both, len(shared) - only_m - only_p - both, sign_test_p(only_m, only_p))


def paired_counts(records: Sequence[InstanceRecord], method: str, threshold_px: float = 3.0) -> list[PairedCount]:
    """``method`` against every other method of the records, per modality (sorted) then over all of them.

    Instances are matched by (modality, pair, seed, instance); one only a single method has is left out.
    """
    by_method: dict[str, dict[tuple, InstanceRecord]] = {}
    for r in records:
        by_method.setdefault(r.method, {})[_key(r)] = r
    if method not in by_method:
        raise ValueError(f"no records of method {method!r}")
    peers = [m for m in by_method if m != method]
    modalities = sorted({k[0] for k in by_method[method]})
    out = []
    for mod in modalities + ([ALL] if len(modalities) > 1 else []):
        def of(m: str) -> dict:
            return {k: r for k, r in by_method[m].items() if mod == ALL or k[0] == mod}

        out.extend(_count(mod, method, peer, of(method), of(peer), threshold_px) for peer in peers)
    return out


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def paired_table(rows: Sequence[PairedCount]) -> str:
    """Markdown: one row per (modality, peer)."""
    if not rows:
        return ""
    t = rows[0].threshold_px
    lines = [
        f"| modality | {rows[0].method} against | only {rows[0].method} | only the peer | both | neither | sign-test p |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r.modality} | {r.peer} | {r.only_method} | {r.only_peer} | {r.both} | {r.neither} | {_p(r.p_value)} |" for r in rows]
    return f"Paired at {t:g} px (instances registered within {t:g} px by one method and not the other):\n\n" + "\n".join(lines) + "\n"
