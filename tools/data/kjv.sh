#!/usr/bin/env bash
# King James Bible (Debian bible-kjv / bible-kjv-text, public domain) -> train / validation text.
#
#   tools/data/kjv.sh [OUT_DIR]        (default OUT_DIR: tools/train/data)
#
# Output (verse references stripped, one verse per line, a blank line between chapters):
#   OUT_DIR/kjv_train.txt   every chapter except the validation ones
#   OUT_DIR/kjv_valid.txt   held out by chapter: the 1189 chapters are numbered 0.. in canonical order
#                           and every 20th one (index % 20 == 10) goes to validation (59 chapters, ~5%)
#   OUT_DIR/kjv_all.txt     the raw `bible` output (with references), for reference
# Deterministic: the same package version gives byte-identical files.
set -euo pipefail
OUT_DIR=${1:-tools/train/data}
if ! command -v bible >/dev/null 2>&1 || ! dpkg -s bible-kjv-text >/dev/null 2>&1; then
  echo "installing bible-kjv bible-kjv-text from Debian" >&2
  apt-get install -y bible-kjv bible-kjv-text >&2
fi
mkdir -p "$OUT_DIR"
bible -f "Gen1:1-Rev22:21" > "$OUT_DIR/kjv_all.txt"
# Lines look like `Ge1:1 In the beginning ...`, `1Cor13:4 Charity suffereth long ...`.
awk -v train="$OUT_DIR/kjv_train.txt" -v valid="$OUT_DIR/kjv_valid.txt" '
  BEGIN { chapter = -1; prev = "" }
  {
    if (!match($0, /^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ /)) { print "unexpected line " NR ": " $0 > "/dev/stderr"; exit 1 }
    ref = substr($0, 1, RLENGTH - 1); text = substr($0, RLENGTH + 1)
    sub(/:[0-9]+$/, "", ref)                     # book + chapter, e.g. Ge1
    if (ref != prev) {
      chapter++; prev = ref
      out = (chapter % 20 == 10) ? valid : train
      if (started[out]) print "" > out           # blank line between chapters
      started[out] = 1
    }
    print text > out
  }
  END { printf "chapters: %d\n", chapter + 1 > "/dev/stderr" }
' "$OUT_DIR/kjv_all.txt"
wc -lc "$OUT_DIR/kjv_train.txt" "$OUT_DIR/kjv_valid.txt" >&2
