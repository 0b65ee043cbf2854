"""geomreg: co-registration of multimodal satellite imagery with RegNetMamba-2."""

from __future__ import annotations

import logging

from geomreg._version import __version__
from geomreg.matching.types import ImageMatcher, MatchResult

__all__ = ["Matcher", "MatchResult", "ImageMatcher", "get_matcher", "register", "InputError", "OutputError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # Lazy: importing geomreg must stay cheap (the QGIS plugin and Dask workers import it).
    if name in ("Matcher", "get_matcher"):
        from geomreg.matching import api

        return getattr(api, name)
    if name == "register":
        from geomreg.api import register

        return register
    if name in ("InputError", "OutputError"):
        # InputError: bad input (CLI exit 2); OutputError: the machine could not take the outputs (exit 3).
        from geomreg.geo import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'geomreg' has no attribute {name!r}")
