-- Admin area: the admin password, admin sessions, login throttling, launch figures per consumer,
-- and consumer secrets encrypted at rest. Never edit a migration that has shipped.

-- At most one row: the admin password as an Argon2id PHC string.
CREATE TABLE admin_password (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    hash       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The id is the SHA-256 of the cookie value, so a copied database holds no usable session.
CREATE TABLE admin_sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL -- last use + admin_idle_timeout
);
CREATE INDEX admin_sessions_by_expiry ON admin_sessions (expires_at);

-- One row per failed login, kept for a minute: the throttle counts them per address.
CREATE TABLE admin_login_failures (
    address TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX admin_login_failures_by_address ON admin_login_failures (address, at);

-- 0: `secret` is plaintext (rows from 0001, encrypted at the next start); 1: it is
-- base64(nonce || ChaCha20-Poly1305 ciphertext) under a key derived from secret_key.
ALTER TABLE consumers ADD COLUMN secret_encrypted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE consumers ADD COLUMN launch_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE consumers ADD COLUMN last_launch_at INTEGER;

-- Refused launches of known consumers, counted per hour so a flood of bad launches stays small.
CREATE TABLE consumer_refusals (
    consumer_key TEXT NOT NULL,
    hour         INTEGER NOT NULL, -- Unix seconds / 3600
    refused      INTEGER NOT NULL,
    PRIMARY KEY (consumer_key, hour)
);
