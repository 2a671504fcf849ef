-- Launch core: consumers (LMS keys), nonces (replay protection) and server-side sessions.
-- Times are integer Unix seconds so the SQL stays portable to PostgreSQL.
-- Never edit a migration that has shipped: add a new file instead.

CREATE TABLE consumers (
    consumer_key TEXT PRIMARY KEY NOT NULL,
    secret       TEXT NOT NULL,
    name         TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL
);

-- A nonce is accepted once per consumer: the primary key makes the check atomic.
CREATE TABLE nonces (
    consumer_key TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer_key, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    consumer_key TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    roles        TEXT NOT NULL,
    launch       TEXT NOT NULL, -- JSON of the launch parameters (without oauth_signature)
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_consumer ON sessions (consumer_key);
