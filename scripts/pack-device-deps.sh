#!/usr/bin/env bash
# Copies the Debian build dependencies of lgm that a GPU machine's image may lack into .deps/usr, relocatable
# (docs/gpu.md §The device check): Eigen, doctest, toml++ (its shared library too), CLI11 and nlohmann-json with
# their CMake package files, and zlib's header and static library. scripts/gpu-check.sh finds them there; carry
# `.deps` to the device machine beside the working tree (about 13 MiB). Run it where scripts/setup.sh has run.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.deps/usr
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
paths=(
  /usr/include/eigen3 /usr/share/eigen3
  /usr/include/doctest /usr/lib/cmake/doctest
  /usr/include/toml++ "/usr/lib/$multiarch/cmake/tomlplusplus"
  /usr/include/CLI /usr/share/cmake/CLI11
  /usr/include/nlohmann /usr/share/cmake/nlohmann_json
  /usr/include/zlib.h /usr/include/zconf.h "/usr/lib/$multiarch/libz.a"
)
for p in "${paths[@]}"; do
  [[ -e $p ]] || { echo "pack-device-deps: $p is missing (run scripts/setup.sh first)" >&2; exit 1; }
done
rm -rf .deps
for p in "${paths[@]}" "/usr/lib/$multiarch"/libtomlplusplus.so*; do
  rel=${p#/usr/}
  mkdir -p "$dest/$(dirname "$rel")"
  cp -a "$p" "$dest/$rel"
done
# doctest's targets file names /usr outright: make its prefix the one three levels above the file instead
sed -i 's|^set(_IMPORT_PREFIX "/usr")|get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)|' \
  "$dest/lib/cmake/doctest/doctestTargets.cmake"
grep -q 'CMAKE_CURRENT_LIST_DIR' "$dest/lib/cmake/doctest/doctestTargets.cmake" ||
  { echo "pack-device-deps: doctest's CMake file has another layout; not relocated" >&2; exit 1; }
echo "pack-device-deps: $(du -sh .deps | cut -f1) in .deps (carry it: run(carry=[\".deps\"]))"
