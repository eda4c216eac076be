-- Schema version 8: MELT and decoding measured.
-- `runs.role` may be 'melt' (a looped model post-trained from a finished looped one into one KV
-- cache per core block shared by every loop; docs/melt.md): SQLite cannot change a CHECK in
-- place, so `runs` is rebuilt as the lineage migration did, every row and rowid kept.
CREATE TABLE runs_melt (
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
    role           TEXT CHECK (role IN ('trunk','branch','recast','melt')),
    parent_run_key TEXT,
    parent_step    INTEGER
);
INSERT INTO runs_melt (rowid, run_key, sweep, variant, config_json, arch, d_model, n_heads,
    n_layers, mlp, seq_len, batch_size, lr, seed, injection, n_prelude, n_core, n_coda,
    mean_recurrence, backprop_depth, params, non_embedding_params, tokens, flops, status,
    attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds,
    tokens_per_second, loss_spikes, error, created_at, started_at, finished_at, role,
    parent_run_key, parent_step)
SELECT rowid, run_key, sweep, variant, config_json, arch, d_model, n_heads,
    n_layers, mlp, seq_len, batch_size, lr, seed, injection, n_prelude, n_core, n_coda,
    mean_recurrence, backprop_depth, params, non_embedding_params, tokens, flops, status,
    attempts, steps_done, final_train_loss, final_val_loss, final_val_bpb, wall_seconds,
    tokens_per_second, loss_spikes, error, created_at, started_at, finished_at, role,
    parent_run_key, parent_step
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_melt RENAME TO runs;
CREATE INDEX runs_by_sweep ON runs(sweep, status);
CREATE INDEX runs_by_parent ON runs(parent_run_key);

-- Decoding measured. One row per (run, step, loops): the finished model
-- decodes validation text a token at a time through its KV cache (`model::generate`) —
-- a GPT once (`loops` NULL), a looped or MELT model at each of its `test_loops`.
-- `kv_bytes_per_token`: bytes of keys and values the cache holds per token of context (every
-- block application: a looped model's core once per loop, MELT's once); `peak_cache_bytes`:
-- the most the cache held during the decode (its end; weights and activations not counted);
-- `tokens_per_s`: decoded tokens per second of wall time (the machine's load included);
-- `val_loss`: mean cross-entropy (nats/token) of the decoded predictions over `tokens` tokens.
CREATE TABLE IF NOT EXISTS decode_evals (
    run_key            TEXT NOT NULL REFERENCES runs(run_key),
    step               INTEGER NOT NULL,
    loops              INTEGER,              -- NULL for a GPT
    tokens             INTEGER NOT NULL,
    kv_bytes_per_token REAL NOT NULL,
    peak_cache_bytes   INTEGER NOT NULL,
    tokens_per_s       REAL,
    val_loss           REAL                  -- NULL if not finite
);
CREATE UNIQUE INDEX IF NOT EXISTS decode_evals_unique ON decode_evals(run_key, step, IFNULL(loops, 0));
