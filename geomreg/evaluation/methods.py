"""geomreg's own matchers as benchmark methods, with a reason instead of a crash when one cannot load."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from geomreg.matching.types import ImageMatcher

log = logging.getLogger(__name__)


class MethodUnavailable(RuntimeError):
    """A method cannot run here (no weights, optional package missing, ...); the message says why."""


class CheckpointError(ValueError):
    """A checkpoint the user named explicitly cannot be used; this is bad input, not an unavailable method."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[], ImageMatcher]  # raises MethodUnavailable (or CheckpointError) when it cannot
    description: str = ""


def regnetmamba2(checkpoint: str | Path | None = None, device: str = "auto") -> ImageMatcher:
    """RegNetMamba-2 from an explicit checkpoint, or the packaged weights when ``checkpoint`` is None."""
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint}: no such file")
    try:
        import geomreg

        matcher_cls = geomreg.Matcher
    except Exception as exc:  # the matching API may be missing in a partial install
        raise MethodUnavailable(f"geomreg.Matcher cannot be imported: {exc}") from exc
    if checkpoint is not None:
        path = Path(checkpoint)
        try:
            dev = "cpu" if device == "auto" else device
            return matcher_cls.from_checkpoint(path, device=dev)
        except Exception as exc:
            raise CheckpointError(f"checkpoint {path}: cannot be loaded: {exc}") from exc
    try:
        return matcher_cls.from_pretrained(device=device)
    except Exception as exc:
        raise MethodUnavailable(f"no usable packaged weights: {exc}") from exc


def cfog() -> ImageMatcher:
    try:
        from geomreg.matching.cfog import CFOGMatcher
    except Exception as exc:
        raise MethodUnavailable(f"geomreg.matching.cfog cannot be imported: {exc}") from exc
    return CFOGMatcher()


def refined(base: ImageMatcher) -> ImageMatcher:
    """`base` with its tie points polished by CFOG around its model (geomreg.matching.refine)."""
    from geomreg.matching.refine import RefinedMatcher

    return RefinedMatcher(base)


def polished(base: ImageMatcher) -> ImageMatcher:
    """`base` with each tie point polished by CFOG where it localises distinctively (geomreg.matching.polish)."""
    from geomreg.matching.polish import PolishedMatcher

    return PolishedMatcher(base)


def network_family(make_network: Callable[[], ImageMatcher]) -> dict[str, Callable[[], ImageMatcher]]:
    """Builders of the network ("regnetmamba2") and the matchers built on it ("+polish", "+cfog"), all sharing
    one network made by ``make_network`` once and run once per instance (ReuseLastMatch): the derived methods'
    timings are then their own extra time."""
    network = functools.cache(lambda: ReuseLastMatch(make_network()))
    return {"regnetmamba2": network, "regnetmamba2+polish": lambda: polished(network()),
            "regnetmamba2+cfog": lambda: refined(network())}


class ReuseLastMatch:
    """`base`, returning its last result again when called with the very same arrays: a benchmark scores a
    matcher and the matchers built on it (polish, refine) on one instance without running it once per method.
    The derived methods' timings then exclude the base's own time."""

    def __init__(self, base: ImageMatcher) -> None:
        self.base = base
        self.name = base.name
        self._last: tuple[object, object, object] | None = None

    def match(self, ref, mov):
        if self._last is not None and self._last[0] is ref and self._last[1] is mov:
            return self._last[2]
        result = self.base.match(ref, mov)
        self._last = (ref, mov, result)
        return result

    def match_batch(self, pairs):
        return [self.match(ref, mov) for ref, mov in pairs]


def build_methods(specs: list[MethodSpec]) -> tuple[dict[str, ImageMatcher], dict[str, str]]:
    """(ready matchers by name, reasons by name of the unavailable ones). CheckpointError propagates."""
    ready: dict[str, ImageMatcher] = {}
    unavailable: dict[str, str] = {}
    for spec in specs:
        try:
            ready[spec.name] = spec.build()
        except CheckpointError:
            raise
        except MethodUnavailable as exc:
            log.warning("method %s unavailable: %s", spec.name, exc)
            unavailable[spec.name] = str(exc)
        except Exception as exc:  # a broken optional method must not stop the others
            log.warning("method %s failed to load: %s: %s", spec.name, type(exc).__name__, exc)
            unavailable[spec.name] = f"{type(exc).__name__}: {exc}"
    return ready, unavailable
