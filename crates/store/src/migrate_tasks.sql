-- Schema version 6: synthetic tasks (data.task = 'p_hop', 'addition', 'linear_regression';
-- docs/reasoning-tasks.md).
-- `evals.accuracy`: the fraction of evaluation examples answered exactly (every answer token
-- right), for tasks with right or wrong answers; NULL for text and regression.
ALTER TABLE evals ADD COLUMN accuracy REAL;

-- In-context linear regression: mean squared error / d of predicting y from `n_examples`
-- (x, y) pairs, over the run's fixed evaluation prompts, for the model (at each test-time loop
-- count of a looped model) and for the reference estimators on the same prompts.
CREATE TABLE icl_errors (
    run_key    TEXT NOT NULL REFERENCES runs(run_key),
    estimator  TEXT NOT NULL,              -- 'model', 'least_squares', 'averaging', 'knn3'
    test_loops INTEGER,                    -- the model's loop count; NULL for a GPT and the baselines
    n_examples INTEGER NOT NULL,           -- in-context pairs before the predicted y (0, 1, ...)
    error      REAL                        -- mean squared error / d; 1 is the zero estimator's
);
CREATE UNIQUE INDEX icl_errors_unique ON icl_errors(run_key, estimator, IFNULL(test_loops, -1), n_examples);
