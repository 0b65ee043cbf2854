#!/usr/bin/env bash
# The whole test suite (README's second command; .ci/run calls it):
#   1. the library, CLI, Dask pipeline and notebook tests in .venv (created/updated first),
#   2. the QGIS plugin tests in a real QGIS (Debian packages, installed on first run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GEOMREG_SETUP_ONLY=1 bash scripts/setup.sh
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [[ -d notebooks ]] && compgen -G "notebooks/*.ipynb" >/dev/null; then
  .venv/bin/python -m pytest -q -p no:cacheprovider --nbmake notebooks
fi
bash qgis_plugin/run_tests.sh -q
