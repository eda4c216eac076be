-- loopscale store, schema version 1.
--
-- One SQLite file per sweep (by default results/<sweep>.sqlite). Every number a run produces is
-- here; docs/schema.md explains each column with example queries. Conventions:
--   * losses are mean cross-entropy in nats per token; *_bpb columns are bits per byte of text;
--   * flops are training FLOPs (forward + backward), counted by the formula in crates/model/src/counts.rs;
--   * times are seconds; timestamps are ISO-8601 UTC text ('2026-11-29T03:40:35Z');
--   * rows of metrics/evals carry their run's run_key, so no join is needed to find a run.

-- A sweep file as it was last run. Re-running an edited file updates spec_toml.
CREATE TABLE sweeps (
    name        TEXT PRIMARY KEY,          -- [sweep].name
    description TEXT NOT NULL DEFAULT '',
    spec_path   TEXT NOT NULL,             -- path of the sweep file when last run
    spec_toml   TEXT NOT NULL,             -- its full text
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- One row per run: a fully resolved configuration, identified by the hash of its canonical form.
CREATE TABLE runs (
    run_key      TEXT PRIMARY KEY,         -- 16 hex digits: SHA-256 of config_json, truncated
    sweep        TEXT NOT NULL REFERENCES sweeps(name),
    variant      TEXT,                     -- [[variants]].name this run came from, if any
    config_json  TEXT NOT NULL,            -- the resolved RunConfig (data, train, model, seed)
    -- the main configuration fields, copied out of config_json for querying
    arch         TEXT NOT NULL,            -- 'gpt' | 'looped'
    d_model      INTEGER NOT NULL,
    n_heads      INTEGER NOT NULL,
    n_layers     INTEGER NOT NULL,         -- GPT blocks; for looped runs n_prelude+n_core+n_coda
    mlp          TEXT NOT NULL,            -- 'relu2' | 'gelu' | 'swiglu'
    seq_len      INTEGER NOT NULL,
    batch_size   INTEGER NOT NULL,
    lr           REAL NOT NULL,
    seed         INTEGER NOT NULL,
    -- looped-model fields; NULL for arch = 'gpt'
    injection        TEXT,                 -- 'diagonal' | 'add' | 'linear' | 'none'
    n_prelude        INTEGER,
    n_core           INTEGER,
    n_coda           INTEGER,
    mean_recurrence  INTEGER,
    backprop_depth   INTEGER,
    -- sizes and budgets, computed before training
    params               INTEGER NOT NULL, -- unique trainable parameters, embeddings included
    non_embedding_params INTEGER NOT NULL, -- params without the token embedding (and untied head)
    tokens               INTEGER NOT NULL, -- training-token budget (steps x batch x seq_len)
    flops                REAL NOT NULL,    -- training FLOPs for the whole budget
    -- state and outcome
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending','running','done','failed','diverged','interrupted')),
    attempts     INTEGER NOT NULL DEFAULT 0, -- times a worker started this run
    steps_done   INTEGER,                  -- optimizer steps completed
    final_train_loss REAL,
    final_val_loss   REAL,                 -- last validation loss at the training depth
    final_val_bpb    REAL,
    wall_seconds     REAL,                 -- training wall time of the successful attempt
    tokens_per_second REAL,
    loss_spikes  INTEGER,                  -- steps with loss > 1.5x the mean of the previous 20
    error        TEXT,                     -- why the run failed or diverged
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
);
CREATE INDEX runs_by_sweep ON runs(sweep, status);

-- Training measurements, one row per logged optimizer step.
CREATE TABLE metrics (
    run_key    TEXT NOT NULL REFERENCES runs(run_key),
    step       INTEGER NOT NULL,           -- optimizer step, 1-based
    tokens     INTEGER NOT NULL,           -- training tokens consumed after this step
    flops      REAL NOT NULL,              -- training FLOPs spent after this step
    train_loss REAL,                       -- this step's batch loss, nats/token; NULL if not finite
    lr         REAL NOT NULL,
    grad_norm  REAL,                       -- global gradient norm before clipping; NULL if not finite
    elapsed_seconds REAL NOT NULL,         -- since training started
    state_norm     REAL,                   -- looped: mean per-token L2 norm of the state after the loops
    injection_norm REAL,                   -- looped: spectral norm of the injection's map on the state
    PRIMARY KEY (run_key, step)
) WITHOUT ROWID;

-- Validation measurements: every eval_every steps and at the end of training.
CREATE TABLE evals (
    run_key    TEXT NOT NULL REFERENCES runs(run_key),
    step       INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,
    flops      REAL NOT NULL,
    test_loops INTEGER,                    -- loop count evaluated at; NULL = the training depth
    val_loss   REAL,                       -- nats/token on held-out text; NULL if not finite
    val_bpb    REAL
);
CREATE UNIQUE INDEX evals_unique ON evals(run_key, step, IFNULL(test_loops, -1));

-- Every time a worker started a run, and how that attempt ended.
CREATE TABLE attempts (
    run_key     TEXT NOT NULL REFERENCES runs(run_key),
    attempt     INTEGER NOT NULL,          -- 1, 2, ...
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,             -- 'running' until it ends, then the run's status
    error       TEXT,
    log_path    TEXT,                      -- the worker's log file
    PRIMARY KEY (run_key, attempt)
) WITHOUT ROWID;

-- Fitted scaling laws: one row per `loopscale fit` (per curve for per-curve test-time fits).
CREATE TABLE fits (
    fit_id      INTEGER PRIMARY KEY,
    law         TEXT NOT NULL,             -- 'compute' | 'chinchilla' | 'isoflop' | 'test-time' | 'test-time-pooled'
    source      TEXT NOT NULL,             -- the database or CSV file the points came from
    selection   TEXT NOT NULL,             -- JSON: which points and options (sweep, frontier, axis, drop_top_loss, ...)
    curve       TEXT,                      -- per-curve test-time fits: the run_key of the curve
    n_points    INTEGER NOT NULL,          -- points the fit used
    objective   REAL,                      -- best Huber objective (sum over points)
    starts      INTEGER,                   -- solver starts tried
    converged_starts INTEGER,              -- starts whose solver reported convergence
    heldout_n   INTEGER,                   -- points held out of the fit and predicted (largest compute)
    heldout_mean_abs_rel_error REAL,
    heldout_max_abs_rel_error  REAL,
    report_json TEXT NOT NULL,             -- the whole fit report (as `loopscale fit --json` prints it)
    created_at  TEXT NOT NULL
);

-- Each fitted parameter and derived quantity of a fit, with its bootstrap interval.
CREATE TABLE fit_params (
    fit_id  INTEGER NOT NULL REFERENCES fits(fit_id),
    name    TEXT NOT NULL,                 -- e.g. 'E', 'A', 'alpha', or a derived 'a = beta/(alpha+beta)'
    kind    TEXT NOT NULL CHECK (kind IN ('param', 'derived')),
    value   REAL NOT NULL,                 -- point estimate from all points
    lo      REAL,                          -- lower end of the percentile interval; NULL without bootstrap
    hi      REAL,                          -- upper end
    level   REAL,                          -- the interval's coverage, e.g. 0.95
    PRIMARY KEY (fit_id, name)
) WITHOUT ROWID;

-- The views for the common questions (final_runs, compute_frontier, test_time_curves) are in
-- views.sql, created on every open so that stores made before they existed have them too.
