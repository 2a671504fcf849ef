-- How far pruning has gone is kept per consumer, as the latest `oauth_timestamp` signed into a
-- nonce pruned so far (see store::nonces). The one mark for all consumers, by nonce expiry, locked
-- every consumer out after a clock jump: one LMS's fast clock, or a server clock that had been a
-- day ahead, refused everyone's right launches for as long. Each nonce now keeps its timestamp
-- (NULL for nonces stored before this migration: their expiry bounds it). The old mark stays, as
-- the same bound for every key (`all_signed_up_to`), including keys removed before this
-- migration and added again later. Never edit once shipped: add a new file.
ALTER TABLE nonces ADD COLUMN signed_at INTEGER;
CREATE TABLE nonce_prune_marks (
    consumer_key TEXT PRIMARY KEY NOT NULL,
    signed_up_to INTEGER NOT NULL -- its launches signed at or before this are refused
);
ALTER TABLE nonce_prune_watermark ADD COLUMN all_signed_up_to INTEGER NOT NULL DEFAULT -1;
UPDATE nonce_prune_watermark SET all_signed_up_to = pruned_before - window - 2
    WHERE pruned_before > 0;
-- What is left: the timestamp window the stored nonces' expiries were set under, and that bound.
ALTER TABLE nonce_prune_watermark DROP COLUMN pruned_before;
ALTER TABLE nonce_prune_watermark RENAME TO nonce_pruning;
