"""Matching: RegNetMamba-2, the CFOG-style classical matcher, and the shared Matcher protocol."""

from geomreg.matching.types import ImageMatcher, MatchResult


def get_matcher(*args, **kwargs):
    from geomreg.matching.api import get_matcher as _get

    return _get(*args, **kwargs)


__all__ = ["ImageMatcher", "MatchResult", "get_matcher"]
