-- Schema version 2: what a fit does not support, in words.
-- `notes`: the fit's notes joined by '; ' (a test-time curve without a saturating gain, a rate
-- at its bound, an iso-FLOP optimum at or beyond the edge of the sampled values, ...); NULL when
-- the fit has none. Stores of version 1 get the column, NULL for their fits.
ALTER TABLE fits ADD COLUMN notes TEXT;
