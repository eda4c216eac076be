-- Schema version 5: LoopUS early exit. One row per (run, step, confidence threshold): a token
-- stops looping after the first loop whose confidence head says more than `threshold`, up to
-- `max_loops` (the run's largest test_loops); `mean_loops` is the mean loops per validation
-- token and `val_loss` the mean cross-entropy (nats/token) of the exited predictions.
CREATE TABLE IF NOT EXISTS exit_evals (
    run_key    TEXT NOT NULL REFERENCES runs(run_key),
    step       INTEGER NOT NULL,
    threshold  REAL NOT NULL,
    max_loops  INTEGER NOT NULL,
    mean_loops REAL NOT NULL,
    val_loss   REAL                        -- NULL if not finite
);
CREATE UNIQUE INDEX IF NOT EXISTS exit_evals_unique ON exit_evals(run_key, step, threshold);
