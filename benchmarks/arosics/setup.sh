#!/usr/bin/env bash
# Builds the AROSICS environment used by benchmarks/arosics_compare.py (idempotent: each step is skipped
# when already done; rerun it after editing the pins below).
#
#   bash benchmarks/arosics/setup.sh            # -> benchmarks/arosics/.venv-arosics
#
# AROSICS needs GDAL's Python bindings. The recipe that works here (Debian 12): Debian's python3-gdal
# (GDAL 3.6.2) seen through a venv of Debian's own /usr/bin/python3 made with --system-site-packages,
# and arosics 1.12.1 from PyPI with NumPy kept below 2 (Debian's GDAL bindings are built for NumPy 1).
# arosics' own helpers must be held back too: geoarray >= 0.18 and py_tools_ds >= 0.22 require GDAL >= 3.8,
# which pip would then try to build from source (and fail: no gdal-config); geoarray 0.17.2 and
# py_tools_ds 0.21.1 are the last releases that take GDAL 3.6.
# It is kept apart from the project's .venv (Python 3.11 with its own rasterio/GDAL and NumPy 2).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AROSICS_VENV:-$HERE/.venv-arosics}"
PY_SYS=/usr/bin/python3
PINS=("arosics==1.12.1" "geoarray==0.17.2" "py_tools_ds==0.21.1" "numpy<2")
step() { printf '[arosics/setup.sh] %s\n' "$*"; }

# --- 1. Debian packages: GDAL's Python bindings and venv support ---------------------------------
missing=()
for pkg in python3-gdal python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  step "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. the venv ----------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV from $($PY_SYS --version) with --system-site-packages"
  "$PY_SYS" -m venv --system-site-packages "$VENV"
fi

# --- 3. arosics, installed once per set of pins (the stamp records them) ----------------------------
stamp="$VENV/.arosics-stamp"
want="$(printf '%s\n' "${PINS[@]}")"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  constraints="$(mktemp)"
  printf '%s\n' "numpy<2" >"$constraints"
  step "pip install ${PINS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" "${PINS[@]}"
  rm -f "$constraints"
  printf '%s' "$want" >"$stamp"
else
  step "$VENV already has ${PINS[*]}"
fi

# --- 4. check: arosics imports and sees GDAL 3.6 ------------------------------------------------------
"$VENV/bin/python" -W ignore::UserWarning - <<'PY'  # (matplotlib: Debian's mpl_toolkits seen through the venv)
from osgeo import gdal
import numpy, arosics
print(f"[arosics/setup.sh] arosics {arosics.__version__}, GDAL {gdal.__version__}, NumPy {numpy.__version__}")
PY
