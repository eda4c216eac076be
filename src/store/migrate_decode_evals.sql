-- Schema version 8: decoding measured. One row per (run, step, loops): the finished model
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
