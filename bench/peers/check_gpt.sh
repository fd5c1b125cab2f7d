#!/usr/bin/env bash
# lgm's GPT against the same model in PyTorch, same weights and tokens (docs/nn.md §PyTorch parity): for the CI
# model and the char model's shape, lgm_gpt_parity_omp writes lgm's fp32 loss and gradient and torch_gpt.py
# compares (loss to 1e-5, every tensor's gradient to 1e-4 relative).
#   bench/peers/check_gpt.sh [BUILD_DIR]   (default build/release; needs gpu/lgm_gpt_parity_omp, built with
#                                           -DLGM_BUILD_BENCH=ON or -DLGM_BUILD_GPU_BENCH=ON)
# Exit status 0 when every shape agrees, 1 when one does not, 77 (skipped) without python3-torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-build/release}"
tool="$build/gpu/lgm_gpt_parity_omp"
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  echo "skipped: python3-torch not installed (apt-get install --no-install-recommends python3-torch)"
  exit 77
fi
[[ -x "$tool" ]] || { echo "check_gpt.sh: $tool not found (configure with -DLGM_BUILD_GPU_BENCH=ON)" >&2; exit 1; }
out="$(mktemp -d "${TMPDIR:-/tmp}/lgm-gpt.XXXXXX")"
trap 'rm -rf "$out"' EXIT
status=0
for shape in "ci|--layers 2 --heads 2 --width 64 --context 64 --vocab 256 --batch 4" \
             "char|--layers 6 --heads 6 --width 384 --context 256 --vocab 256 --batch 2"; do
  name="${shape%%|*}"
  echo "== $name model"
  # shellcheck disable=SC2086
  "$tool" "$out/$name" ${shape#*|}
  "$python" "$here/torch_gpt.py" parity "$out/$name" | tail -n 1 || status=1
done
exit $status
