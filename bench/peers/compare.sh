#!/usr/bin/env bash
# The PyTorch peer comparison of issue 5: lgm's Local SGD and the same run in PyTorch on the CPU, reading the same
# data and the same sample indices; prints the loss curves' largest relative difference and the speed ratio.
#   bench/peers/compare.sh [BUILD_DIR]   (default build/release; needs lgm_export_run, built with -DLGM_BUILD_BENCH=ON)
# Extra settings for lgm_export_run may follow in LGM_EXPORT_ARGS, e.g. LGM_EXPORT_ARGS="--M 64 --steps 128".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-build/release}"
exporter="$build/bench/lgm_export_run"
if [[ ! -x "$exporter" ]]; then
  echo "compare.sh: $exporter not found (configure with -DLGM_BUILD_BENCH=ON and build lgm_export_run)" >&2
  exit 1
fi
# Debian's python3-torch belongs to the system interpreter, not to a pyenv/venv python3 that may come first in PATH.
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "compare.sh: installing python3-torch (Debian)" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y python3-torch; else sudo apt-get install -y python3-torch; fi
fi
out="$(mktemp -d "${TMPDIR:-/tmp}/lgm-peers.XXXXXX")"
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2086
"$exporter" "$out" --M 16 --b 32 --d 1000 --N 8192 --H 16 --steps 256 ${LGM_EXPORT_ARGS:-}
"$python" "$here/torch_local_sgd.py" "$out"
