#!/usr/bin/env bash
# Installs what the training pipeline needs, from Debian only (no PyPI):
#   python3-torch python3-numpy  PyTorch 1.13 (CPU) for /usr/bin/python3
#   libopenblas0-pthread         an optimised BLAS: Debian's torch calls the system libblas.so.3, and the
#                                reference BLAS it otherwise gets is ~20x slower (7 vs 160 GFLOPS, 2 cores)
#   bible-kjv bible-kjv-text     the King James Bible (public domain) and the `bible` reader
set -euo pipefail
PKGS="python3-torch python3-numpy libopenblas0-pthread bible-kjv bible-kjv-text"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2
fi
/usr/bin/python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'
update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep '^Value:' || true
