-- Schema version 4: runs built on runs (WSD branches, recast models): each run's place in its tree, and the
-- `blocked` status of a run whose parent failed or diverged.
--   runs.role            'trunk' | 'branch' | 'recast'; NULL for a run that stands alone
--   runs.parent_run_key  the run it starts from (NULL for trunks and standalone runs)
--   runs.parent_step     the parent's step it starts from; NULL = the parent's end
-- SQLite cannot widen a CHECK constraint in place, so `runs` is rebuilt (rowids kept, so
-- registration order is too), with foreign keys off (open.rs checks them afterwards); the
-- views, which name it, are dropped here and created again by the open that runs this migration.
DROP VIEW IF EXISTS final_runs;
DROP VIEW IF EXISTS compute_frontier;
DROP VIEW IF EXISTS test_time_curves;
DROP VIEW IF EXISTS budget_curves;
DROP VIEW IF EXISTS lineage;
CREATE TABLE runs_lineage (
    run_key      TEXT PRIMARY KEY,
    sweep        TEXT NOT NULL REFERENCES sweeps(name),
    variant      TEXT,
    config_json  TEXT NOT NULL,
    arch         TEXT NOT NULL,
    d_model      INTEGER NOT NULL,
    n_heads      INTEGER NOT NULL,
    n_layers     INTEGER NOT NULL,
    mlp          TEXT NOT NULL,
    seq_len      INTEGER NOT NULL,
    batch_size   INTEGER NOT NULL,
    lr           REAL NOT NULL,
    seed         INTEGER NOT NULL,
    injection        TEXT,
    n_prelude        INTEGER,
    n_core           INTEGER,
    n_coda           INTEGER,
    mean_recurrence  INTEGER,
    backprop_depth   INTEGER,
    params               INTEGER NOT NULL,
    non_embedding_params INTEGER NOT NULL,
    tokens               INTEGER NOT NULL,
    flops                REAL NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending','running','done','failed','diverged','interrupted','blocked')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    steps_done   INTEGER,
    final_train_loss REAL,
    final_val_loss   REAL,
    final_val_bpb    REAL,
    wall_seconds     REAL,
    tokens_per_second REAL,
    loss_spikes  INTEGER,
    error        TEXT,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    role           TEXT CHECK (role IN ('trunk','branch','recast')),
    parent_run_key TEXT,
    parent_step    INTEGER
);
INSERT INTO runs_lineage (rowid, run_key, sweep, variant, config_json, arch, d_model, n_heads,
    n_layers, mlp, seq_len, batch_size, lr, seed, injection, n_prelude, n_core, n_coda,
    mean_recurrence, backprop_depth, params, non_embedding_params, tokens, flops, status,
    attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds,
    tokens_per_second, loss_spikes, error, created_at, started_at, finished_at)
SELECT rowid, run_key, sweep, variant, config_json, arch, d_model, n_heads,
    n_layers, mlp, seq_len, batch_size, lr, seed, injection, n_prelude, n_core, n_coda,
    mean_recurrence, backprop_depth, params, non_embedding_params, tokens, flops, status,
    attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds,
    tokens_per_second, loss_spikes, error, created_at, started_at, finished_at
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_lineage RENAME TO runs;
CREATE INDEX runs_by_sweep ON runs(sweep, status);
CREATE INDEX runs_by_parent ON runs(parent_run_key);
