-- Schema version 10: training text read without replacement (data.order = 'epochs', the
-- default; docs/data.md). `runs.text_passes`: passes over the training split that the run's
-- steps made, exact for runs read in epochs (samples / non-overlapping windows of the split),
-- and the windows' tokens over the split's tokens for runs drawn with replacement. NULL for
-- tasks, for runs trained by another program, and for runs finished before this version.
ALTER TABLE runs ADD COLUMN text_passes REAL;
