-- How far pruning has gone is kept per consumer, as the latest `oauth_timestamp` signed into a
-- nonce pruned so far (see store::nonces). The one mark for all consumers, by nonce expiry, locked
-- every consumer out after a clock jump: one LMS's fast clock, or a server clock that had been a
-- day ahead, refused everyone's right launches for as long. Each nonce now keeps its timestamp
-- (NULL for nonces stored before this migration: their expiry bounds it). The old mark carries
-- over to every consumer as the same bound. Never edit once shipped: add a new file.
ALTER TABLE nonces ADD COLUMN signed_at INTEGER;
CREATE TABLE nonce_prune_marks (
    consumer_key TEXT PRIMARY KEY NOT NULL,
    signed_up_to INTEGER NOT NULL -- launches signed at or before this are refused
);
INSERT INTO nonce_prune_marks (consumer_key, signed_up_to)
    SELECT c.consumer_key, w.pruned_before - w.window - 2
    FROM consumers c, nonce_prune_watermark w
    WHERE w.pruned_before > 0;
-- What is left is the timestamp window the stored nonces' expiries were set under.
ALTER TABLE nonce_prune_watermark DROP COLUMN pruned_before;
ALTER TABLE nonce_prune_watermark RENAME TO nonce_window;
