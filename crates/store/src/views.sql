-- Views for the common questions (read-only; they cost nothing until queried). Created with
-- IF NOT EXISTS on every read-write open, and as TEMP views on a read-only open of a store made
-- before they existed (see open.rs), so every store answers them.

-- Every finished run with its outcome: the table to plot final loss against size or compute.
-- A WSD trunk (role 'trunk') is left out: its learning rate never cooled down, so its loss is a
-- means to its branches, not a result (the lineage view and the runs table still have it).
CREATE VIEW IF NOT EXISTS final_runs AS
SELECT run_key, sweep, variant, arch, injection, d_model, n_heads, n_layers, mlp, mean_recurrence,
       backprop_depth, seed, lr, params, non_embedding_params, tokens, flops,
       final_train_loss, final_val_loss, final_val_bpb, loss_spikes, wall_seconds, tokens_per_second
FROM runs
WHERE status = 'done' AND final_val_loss IS NOT NULL AND IFNULL(role, '') <> 'trunk';

-- The compute frontier of each sweep: finished runs that no run of the same sweep beats with
-- the same or fewer training FLOPs.
CREATE VIEW IF NOT EXISTS compute_frontier AS
SELECT a.sweep, a.run_key, a.arch, a.injection, a.flops, a.final_val_loss
FROM final_runs a
WHERE NOT EXISTS (
    SELECT 1 FROM final_runs b
    WHERE b.sweep = a.sweep AND b.flops <= a.flops AND b.final_val_loss < a.final_val_loss
);

-- Test-time curves of finished runs: validation loss at each evaluated loop count, at each
-- run's last evaluated step (looped runs with model.test_loops). A time-conditioned run
-- (LoopFormer) is evaluated along several schedules per loop count; its curve here is the
-- uniform schedule's (evals.schedule has them all).
CREATE VIEW IF NOT EXISTS test_time_curves AS
SELECT e.run_key, r.sweep, r.injection, r.mean_recurrence, e.step, e.test_loops, e.val_loss, e.val_bpb
FROM evals e JOIN runs r USING (run_key)
WHERE r.status = 'done' AND e.test_loops IS NOT NULL
  AND IFNULL(e.schedule, 'uniform') = 'uniform'
  AND e.step = (SELECT max(step) FROM evals x WHERE x.run_key = e.run_key AND x.test_loops IS NOT NULL);

-- Loss against the loop budget M of finished looped runs, at each run's last evaluated step:
-- one row per (run, test_loops, schedule). schedule is the named step schedule of a
-- time-conditioned run (LoopFormer: 'uniform', 'coarse_fine'), 'fixed' for an unconditioned
-- looped run (Parcae and the other injections, simply run for M loops).
CREATE VIEW IF NOT EXISTS budget_curves AS
SELECT e.run_key, r.sweep, r.variant, r.injection, r.mean_recurrence, e.test_loops,
       IFNULL(e.schedule, 'fixed') AS schedule, e.val_loss, e.val_bpb
FROM evals e JOIN runs r USING (run_key)
WHERE r.status = 'done' AND e.test_loops IS NOT NULL
  AND e.step = (SELECT max(step) FROM evals x WHERE x.run_key = e.run_key AND x.test_loops IS NOT NULL);

-- The latest fit of each law, source, selection of points and curve. `fits` keeps every fit
-- ever recorded (each `loopscale fit` adds its rows: the history); this view holds the newest
-- of each kind, what the data say now. A fit's kind is its law, its source, its curve and the
-- options that choose its points (sweep, variant, parameter count, frontier, axis, tuned keys,
-- dropped points), not the bootstrap's resamples or seed.
CREATE VIEW IF NOT EXISTS latest_fits AS
SELECT f.* FROM fits f
WHERE f.fit_id IN (
  SELECT max(g.fit_id) FROM fits g
  GROUP BY g.law, g.source, IFNULL(g.curve, ''),
    CASE WHEN json_valid(g.selection) THEN
      json_array(json_extract(g.selection, '$.sweep'), json_extract(g.selection, '$.variant'),
                 json_extract(g.selection, '$.n'), json_extract(g.selection, '$.frontier'),
                 json_extract(g.selection, '$.axis'), json_extract(g.selection, '$.tune'),
                 json_extract(g.selection, '$.drop_top_loss'))
    ELSE g.selection END
);

-- The learning-rate envelope: finished runs that differ only in train.lr form one
-- configuration (the rest of their resolved configuration, seed included, is equal), and the
-- run with the lowest final validation loss stands for it, as `fit --tune train.lr` chooses.
-- lr_tried counts the learning rates the configuration tried; lr_min and lr_max are its grid's
-- ends (a best lr at an end: the optimum may lie beyond it).
CREATE VIEW IF NOT EXISTS lr_envelope AS
SELECT run_key, sweep, variant, arch, injection, d_model, n_layers, mean_recurrence, seed,
       tokens, flops, non_embedding_params, lr, final_val_loss, lr_tried, lr_min, lr_max
FROM (
  SELECT f.*, count(*) OVER config AS lr_tried, min(f.lr) OVER config AS lr_min,
         max(f.lr) OVER config AS lr_max,
         row_number() OVER (config ORDER BY f.final_val_loss, f.run_key) AS rank_in_config
  FROM final_runs f JOIN runs r USING (run_key)
  WINDOW config AS (PARTITION BY json_remove(r.config_json, '$.train.lr'))
)
WHERE rank_in_config = 1;

-- Replicate groups: finished runs that differ only in their seed (a WSD branch's parent, which
-- names its seed's trunk, does not split a group). One row per group: `group_config` is the
-- shared configuration (config_json without the seed), `n` the seeds finished, `seeds` them,
-- and the final validation loss's mean, sample variance (`var_val_loss`, NULL for n = 1; the
-- standard deviation is its square root, the standard error sqrt(var_val_loss / n)), min and
-- max. A difference between two groups is beyond seed noise only when it exceeds its standard
-- error sqrt(var₁/n₁ + var₂/n₂) by the t quantile (`loopscale compare` prints the verdicts).
CREATE VIEW IF NOT EXISTS run_groups AS
SELECT sweep, group_config, count(*) AS n, group_concat(seed, ',') AS seeds,
       min(run_key) AS first_run_key, variant, arch, injection, d_model, n_heads, n_layers,
       mean_recurrence, backprop_depth, lr, params, non_embedding_params, tokens, flops,
       avg(final_val_loss) AS mean_val_loss,
       CASE WHEN count(*) > 1 THEN
         max(0.0, (sum(final_val_loss * final_val_loss)
                   - count(*) * avg(final_val_loss) * avg(final_val_loss)) / (count(*) - 1))
       END AS var_val_loss,
       min(final_val_loss) AS min_val_loss, max(final_val_loss) AS max_val_loss,
       avg(final_val_bpb) AS mean_val_bpb
FROM (SELECT r.*, json_remove(r.config_json, '$.seed', '$.lineage.parent') AS group_config
      FROM runs r
      WHERE r.status = 'done' AND r.final_val_loss IS NOT NULL AND IFNULL(role, '') <> 'trunk')
GROUP BY sweep, group_config;

-- Replicate groups' validation curves: at each evaluated step (at the training depth), the
-- mean, sample variance and number of the group's finished seeds evaluated there.
CREATE VIEW IF NOT EXISTS group_curves AS
SELECT g.sweep, g.group_config, e.step, e.tokens, count(*) AS n,
       avg(e.val_loss) AS mean_val_loss,
       CASE WHEN count(*) > 1 THEN
         max(0.0, (sum(e.val_loss * e.val_loss) - count(*) * avg(e.val_loss) * avg(e.val_loss))
                  / (count(*) - 1))
       END AS var_val_loss
FROM evals e
JOIN (SELECT run_key, sweep, json_remove(config_json, '$.seed', '$.lineage.parent') AS group_config
      FROM runs
      WHERE status = 'done' AND final_val_loss IS NOT NULL AND IFNULL(role, '') <> 'trunk') g
  USING (run_key)
WHERE e.test_loops IS NULL
GROUP BY g.sweep, g.group_config, e.step;

-- Runs built on runs: every run with a role (a WSD trunk, its branches, a recast model), its
-- parent and the parent's step it started from (NULL = the parent's end), and where each
-- stands. A branch's tokens and flops count its whole path (trunk prefix + cooldown);
-- own_tokens is the part it trained itself (a recast run's tokens are all its own: it takes
-- only its parent's weights).
CREATE VIEW IF NOT EXISTS lineage AS
SELECT c.run_key, c.sweep, c.variant, c.role, c.parent_run_key, c.parent_step, c.status,
       p.status AS parent_status, c.tokens, c.flops,
       c.tokens - IFNULL(c.parent_step, 0) * c.batch_size * c.seq_len * (c.role = 'branch')
           AS own_tokens,
       c.final_val_loss, c.error
FROM runs c LEFT JOIN runs p ON p.run_key = c.parent_run_key
WHERE c.role IS NOT NULL;

