-- Schema version 3: budget-conditioned evaluation (LoopFormer, loop_conditioning = "time_step").
-- `evals.schedule`: the named step schedule a conditioned model ran along at `test_loops` loops
-- ('uniform': M steps of 1/M; 'coarse_fine': larger steps first); NULL for every other eval
-- (unconditioned looped models at test_loops, and every training-depth eval). A conditioned run
-- has one row per (test_loops, schedule), so the uniqueness of an eval row includes it.
-- The test-time view is rebuilt (views.sql) to read only one schedule per loop count.
ALTER TABLE evals ADD COLUMN schedule TEXT;
DROP INDEX evals_unique;
CREATE UNIQUE INDEX evals_unique ON evals(run_key, step, IFNULL(test_loops, -1), IFNULL(schedule, ''));
DROP VIEW IF EXISTS test_time_curves;
