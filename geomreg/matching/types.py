"""Result types and the matcher protocol shared by every matcher of the project."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class MatchResult:
    """Correspondences between a reference and a moving image.

    Coordinates are (x = column, y = row) in each input's own pixel grid, with the origin at the
    centre of the top-left pixel.
    """

    ref_xy: np.ndarray  # [N, 2] float64
    mov_xy: np.ndarray  # [N, 2] float64
    confidence: np.ndarray  # [N] float64 in [0, 1]
    notes: tuple[str, ...] = field(default=())  # what the matcher did that the caller should know (e.g. downscaling)

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.ref_xy.shape != (n, 2) or self.mov_xy.shape != (n, 2):
            raise ValueError(
                f"MatchResult: inconsistent shapes ref_xy {self.ref_xy.shape}, mov_xy {self.mov_xy.shape}, confidence {self.confidence.shape}"
            )

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def empty(cls, notes: Sequence[str] = ()) -> "MatchResult":
        z = np.zeros((0, 2), dtype=np.float64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.float64), tuple(notes))

    def filtered(self, keep: np.ndarray) -> "MatchResult":
        return MatchResult(self.ref_xy[keep], self.mov_xy[keep], self.confidence[keep], self.notes)

    def with_note(self, note: str) -> "MatchResult":
        return MatchResult(self.ref_xy, self.mov_xy, self.confidence, self.notes + (note,))


@runtime_checkable
class ImageMatcher(Protocol):
    """What the geospatial layer needs from a matcher (RegNetMamba-2 or the CFOG-style baseline)."""

    name: str

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult: ...

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]: ...
