#!/usr/bin/env bash
# A separate interpreter with AROSICS for benchmarks/arosics_side_by_side.py (never a product dependency):
# AROSICS needs GDAL's Python bindings built against the system GDAL.
# Usage: scripts/arosics_env.sh [VENV]   (default: .venv-arosics; needs root for apt-get)
set -euo pipefail
venv="${1:-.venv-arosics}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdal-bin libgdal-dev
python3 -m venv "$venv"
gdal_version="$(gdal-config --version)"
"$venv/bin/pip" install -q numpy setuptools wheel
"$venv/bin/pip" install -q --no-build-isolation --no-cache-dir "gdal==$gdal_version"
"$venv/bin/pip" install -q arosics "gdal==$gdal_version"
"$venv/bin/python" -c "import arosics; print('arosics', arosics.__version__, 'in', '$venv')"
