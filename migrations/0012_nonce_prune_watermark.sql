-- At most one row: every nonce pruned so far expired before `pruned_before`, and the nonces
-- stored expire `window` seconds (the timestamp_window they were stored under) plus one after
-- their launch at the earliest. A launch whose nonce would have expired before the mark is
-- refused: it cannot be told from a replay (see store::nonces). Never edit once shipped: add a
-- new file.
CREATE TABLE nonce_prune_watermark (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_before INTEGER NOT NULL,
    window        INTEGER NOT NULL
);
