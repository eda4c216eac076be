-- Schema version 7: p-hop trained on every defined position (data.targets = "all";
-- docs/reasoning-tasks.md). `evals.position_accuracy`: for tasks with right or wrong answers,
-- the fraction of scored positions predicted exactly (p-hop: every position whose answer is
-- defined; `accuracy` stays the fraction of examples whose answer, the last position, is right);
-- NULL for text and regression.
ALTER TABLE evals ADD COLUMN position_accuracy REAL;
