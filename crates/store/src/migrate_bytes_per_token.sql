-- Schema version 9: real tokenizers (data.tokenizer = 'gpt2', a tokenizer.json, ...) and token
-- shards (data.tokens; docs/data.md). `runs.bytes_per_token`: bytes of text per validation
-- token under the run's tokenizer, measured on the scored validation targets (1 for bytes);
-- final_val_bpb = final_val_loss / ln 2 / bytes_per_token, which puts runs of every tokenizer
-- on one bits-per-byte axis. NULL for tasks and for runs finished before this version.
ALTER TABLE runs ADD COLUMN bytes_per_token REAL;
-- `runs.peak_rss_bytes`: the training process's peak resident memory (VmHWM) when the run
-- stopped, heap and touched pages of memory-mapped shards together; NULL where unknown.
ALTER TABLE runs ADD COLUMN peak_rss_bytes INTEGER;
