-- Single-use tokens that carry a session into a new window when the LMS iframe loses the cookie.
CREATE TABLE handoffs (
    token      TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX handoffs_by_expiry ON handoffs (expires_at);
