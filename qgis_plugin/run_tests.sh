#!/usr/bin/env bash
# Tests of the QGIS plugin in a real QGIS (Debian's packages), from a bare Debian 12 machine.
#
#   bash qgis_plugin/run_tests.sh [pytest args...]
#
# Installs, each step skipped when already done:
#   1. apt: qgis, python3-qgis, qgis-providers, xvfb, xauth, python3-venv
#   2. qgis_plugin/.venv-qgis: a venv of Debian's /usr/bin/python3 (QGIS's own Python) with
#      --system-site-packages, numpy<2 (Debian's GDAL bindings are built for NumPy 1), pytest,
#      pytest-qgis, and geomreg itself (editable) with its dependencies, so that the in-process engine
#      path is tested too. GEOMREG_QGIS_ENGINE_DEPS=0 installs geomreg without dependencies instead.
# then runs qgis_plugin/tests with QT_QPA_PLATFORM=offscreen (the desktop test starts Xvfb itself).
# The subprocess engine path uses the project's own .venv (GEOMREG_TEST_PYTHON overrides it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="$HERE/.venv-qgis"
START=$SECONDS
APT_PACKAGES=(qgis python3-qgis qgis-providers xvfb xauth python3-venv)
# attrs>=23.2: affine 3 (which geomreg needs) uses cached_property on attrs slotted classes, which
# Debian's attrs 22.2 (seen through --system-site-packages) does not support.
PIP_PACKAGES=("numpy<2" "attrs>=23.2" "affine>=3" "pytest>=8" "pytest-qgis>=4" "pytest-timeout>=2.3")
ENGINE_DEPS="${GEOMREG_QGIS_ENGINE_DEPS:-1}"

# pip's configuration here lists local indexes that may be absent: its warnings about them are noise.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location .* is ignored" >&2); }
step() { printf '[run_tests.sh %4ds] %s\n' "$((SECONDS - START))" "$*"; }

# --- 1. Debian packages ------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  step "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "Debian packages already installed"
fi

# --- 2. the Debian-Python venv ----------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV (Debian $(/usr/bin/python3 --version))"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
# Reinstall only when what is asked for changed (the stamp holds it).
stamp_content="$(printf '%s\n' "${PIP_PACKAGES[@]}" "engine-deps=$ENGINE_DEPS"; cat "$REPO/pyproject.toml")"
stamp="$VENV/.geomreg-qgis-stamp"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$stamp_content" ]]; then
  constraints="$(mktemp)"
  printf '%s\n' "numpy<2" "attrs>=23.2" >"$constraints"
  step "pip install ${PIP_PACKAGES[*]}"
  quiet_pip install -q --disable-pip-version-check -c "$constraints" "${PIP_PACKAGES[@]}"
  if [[ "$ENGINE_DEPS" == "1" ]]; then
    step "pip install -e $REPO (geomreg and its dependencies, torch from the local wheel)"
    quiet_pip install -q --disable-pip-version-check -c "$constraints" -e "$REPO"
  else
    step "pip install -e $REPO --no-deps"
    quiet_pip install -q --disable-pip-version-check --no-deps -e "$REPO"
  fi
  rm -f "$constraints"
  printf '%s' "$stamp_content" >"$stamp"
else
  step "venv already up to date"
fi

# --- 3. the tests -----------------------------------------------------------------------------------
export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [[ -z "${GEOMREG_TEST_PYTHON:-}" && ! -x "$REPO/.venv/bin/python" ]]; then
  step "note: no $REPO/.venv: the subprocess-engine tests will be skipped"
fi
step "pytest qgis_plugin/tests"
# pytest-qgis keeps a QGIS profile in <rootdir>/.qgis-settings: start from a fresh one every run.
rm -rf "$HERE/.qgis-settings"
cd "$REPO"
set +e
"$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$HERE/tests" -q -rs "$@"
status=$?
set -e
step "done (pytest exit $status)"
exit $status
