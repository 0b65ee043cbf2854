"""geomreg: co-registration of multimodal satellite imagery with RegNetMamba-2."""

from __future__ import annotations

import logging

from geomreg._version import __version__
from geomreg.matching.types import ImageMatcher, MatchResult

__all__ = ["Matcher", "MatchResult", "ImageMatcher", "get_matcher", "register", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # Lazy: importing geomreg must stay cheap (the QGIS plugin and Dask workers import it).
    if name in ("Matcher", "get_matcher"):
        from geomreg.matching import api

        return getattr(api, name)
    if name == "register":
        from geomreg.api import register

        return register
    raise AttributeError(f"module 'geomreg' has no attribute {name!r}")
