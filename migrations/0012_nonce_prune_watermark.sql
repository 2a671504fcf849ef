-- At most one row: the latest time nonces were pruned up to. A launch whose nonce could have been
-- pruned by then (its timestamp plus the window is before it) is refused, so a server that once
-- pruned by a clock running ahead cannot accept a replay later, restarts included (see
-- store::nonces). Never edit once shipped: add a new file.
CREATE TABLE nonce_prune_watermark (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_before INTEGER NOT NULL
);
