-- Schema version 11: (1) where each attempt's wall time went (`loopscale run` prints the sweep's
-- split at its end; docs/schema.md). Seconds of the attempt in training steps, periodic
-- validation, a finished run's test-time evaluations (test_loops, early exits, ICL errors),
-- decoding evaluations, checkpoints and final weights, handing rows to the store, and in all
-- (first step to end). NULL for attempts that failed with an error, runs trained by another
-- program, and attempts before this version.
ALTER TABLE attempts ADD COLUMN seconds_steps REAL;
ALTER TABLE attempts ADD COLUMN seconds_evals REAL;
ALTER TABLE attempts ADD COLUMN seconds_test_evals REAL;
ALTER TABLE attempts ADD COLUMN seconds_decode_evals REAL;
ALTER TABLE attempts ADD COLUMN seconds_checkpoints REAL;
ALTER TABLE attempts ADD COLUMN seconds_records REAL;
ALTER TABLE attempts ADD COLUMN seconds_total REAL;

-- (2) Early exit is evaluated at more than one cap (the training depth, and the deepest
-- `test_loops` where that is deeper): a row is one run, step, threshold and cap.
DROP INDEX IF EXISTS exit_evals_unique;
CREATE UNIQUE INDEX exit_evals_unique ON exit_evals(run_key, step, threshold, max_loops);
