#!/usr/bin/env bash
# Installs the Debian 12 packages lgm needs; skips what is already installed (idempotent).
set -euo pipefail
packages=(build-essential cmake pkg-config clang-format libeigen3-dev doctest-dev libbenchmark-dev
          libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libfmt-dev zlib1g-dev gnuplot-nox
          libopenmpi-dev openmpi-bin dataset-fashion-mnist clang libclang-rt-14-dev libthrust-dev libcub-dev fortunes)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
