#!/usr/bin/env bash
# Checks that every citation in the repository resolves inside the repository.
#
#   scripts/check-citations.sh [ROOT]      check the tree at ROOT (default: this script's repository)
#   scripts/check-citations.sh --self-test check that the checker rejects bad citations
#
# The convention (docs/design.md, "Rules of the house"): a formula or decision is cited as
#   docs/<page>.md §<heading>
# where <heading> is the text of a heading of that page, or its key: the heading text up to the first
# " (", ": ", ", ", "; " or " — " (so "## A8: optimizer state at a sync" is cited as §A8). A "§" without its own
# page on the same line refers to the last page cited before it on that line ("docs/decisions.md §B6, §B13").
# Fails (exit 1) on
#   - a "§" with no docs/<page>.md before it on its line, or naming a page that does not exist;
#   - a "§" followed by text that does not start with a heading (key) of that page;
#   - two headings of one page with the same key (an ambiguous anchor);
#   - a mention of the specification files that are not part of the repository.
# Needs bash and python3 (standard library only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v python3 >/dev/null 2>&1; then
  echo "check-citations: skipped: python3 not found"
  exit 77
fi

check() {
  python3 - "$1" <<'PY'
import os
import re
import sys

root = os.path.abspath(sys.argv[1])
SCAN_DIRS = ["include", "simulator", "gpu", "theory", "bench", "tests", "examples", "docs", "cmake", "scripts"]
SCAN_FILES = ["README.md", "CMakeLists.txt"]
SUFFIXES = (".hpp", ".cpp", ".h", ".cu", ".cuh", ".txt", ".cmake", ".md", ".sh", ".py", ".toml", ".in")
SELF = os.path.join("scripts", "check-citations.sh")
SKIP_DIRS = {"build", ".git", "results_png"}
# documents that the code used to cite but that are not in the repository
UNSHIPPED = re.compile(r"adaptive-batch-local-methods|synchronization-rules\.md|reference/networks|"
                       r"\breference/|\.\./shared/|\bDESIGN\b|\breference A\d|\bA\d+ of reference")
PAGE = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)")
KEY_CUTS = (" (", ": ", ", ", "; ", " — ")
WORD = re.compile(r"[A-Za-z0-9_]")


def headings(path):
    """Heading texts of a Markdown file, outside fenced code blocks."""
    out = []
    fence = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if stripped.startswith("```") or stripped.startswith("~~~"):
                mark = stripped[:3]
                fence = None if fence == mark else (fence or mark)
                continue
            if fence:
                continue
            m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if m:
                out.append((number, m.group(2).strip()))
    return out


def keys_of(text):
    keys = {text, text.replace("`", "")}
    for t in list(keys):
        cut = len(t)
        for c in KEY_CUTS:
            i = t.find(c)
            if i > 0:
                cut = min(cut, i)
        keys.add(t[:cut])
    return keys


errors = []
page_keys = {}


def page(name):
    if name not in page_keys:
        path = os.path.join(root, "docs", name)
        if not os.path.isfile(path):
            page_keys[name] = None
        else:
            owner = {}
            for number, text in headings(path):
                for k in keys_of(text):
                    if k in owner and owner[k][1] != text:
                        errors.append(f"docs/{name}:{number}: heading key '{k}' is also the key of line "
                                      f"{owner[k][0]} ('{owner[k][1]}'); citations of it are ambiguous")
                    owner.setdefault(k, (number, text))
            page_keys[name] = set(owner)
    return page_keys[name]


def files():
    for d in SCAN_DIRS:
        top = os.path.join(root, d)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(x for x in dirnames if x not in SKIP_DIRS)
            for fn in sorted(filenames):
                if fn.endswith(SUFFIXES):
                    yield os.path.join(dirpath, fn)
    for fn in SCAN_FILES:
        p = os.path.join(root, fn)
        if os.path.isfile(p):
            yield p


citations = 0
for path in files():
    rel = os.path.relpath(path, root)
    if rel == SELF:
        continue
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        continue
    for number, line in enumerate(lines, 1):
        where = f"{rel}:{number}"
        m = UNSHIPPED.search(line)
        if m:
            errors.append(f"{where}: cites '{m.group(0)}', which is not in the repository; "
                          f"cite docs/<page>.md §<heading> instead")
        for pos, ch in enumerate(line):
            if ch != "§":
                continue
            if line[pos + 1:pos + 2] == "<":  # the placeholder §<heading> of a description of the convention
                continue
            citations += 1
            before = list(PAGE.finditer(line, 0, pos))
            if not before:
                errors.append(f"{where}: '§' without a docs/<page>.md before it on the line: "
                              f"{line[pos:pos + 40].strip()!r}")
                continue
            name = before[-1].group(1)
            keys = page(name)
            if keys is None:
                errors.append(f"{where}: cites docs/{name}, which does not exist")
                continue
            rest = line[pos + 1:]
            ok = any(rest.startswith(k) and (len(rest) == len(k) or not WORD.match(rest[len(k)]))
                     for k in keys if k)
            if not ok:
                errors.append(f"{where}: docs/{name} has no heading for '§{rest[:40].rstrip()}'")

for e in errors:
    print(e)
if errors:
    print(f"check-citations: {len(errors)} problem(s) in {citations} citation(s)")
    sys.exit(1)
print(f"check-citations: all {citations} citations resolve")
PY
}

self_test() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/docs" "$tmp/include"
  printf '# Page\n\n## A8: state at a sync\n\n## Norm test\n\n```\n# Not a heading\n```\n' >"$tmp/docs/page.md"
  printf '// docs/page.md §A8, §Norm test\n' >"$tmp/include/good.hpp"
  check "$tmp" >/dev/null || { echo "self-test: a good tree was rejected"; return 1; }
  local bad
  for bad in '// reference §3.2' '// docs/page.md §A9' '// docs/page.md §A80' '// docs/none.md §A8' \
    '// docs/page.md §Not a heading' '// see synchronization-rules.md' '// (DESIGN §3)'; do
    printf '%s\n' "$bad" >"$tmp/include/bad.hpp"
    if check "$tmp" >/dev/null; then
      echo "self-test: the bad citation '$bad' was accepted"
      return 1
    fi
  done
  rm "$tmp/include/bad.hpp"
  printf '# Page\n\n## A8: one\n\n## A8 (again)\n' >"$tmp/docs/page.md"
  if check "$tmp" >/dev/null; then
    echo "self-test: a duplicate heading key was accepted"
    return 1
  fi
  echo "check-citations self-test: passed"
}

if [[ "${1:-}" == "--self-test" ]]; then
  self_test
else
  check "${1:-$here/..}"
fi
