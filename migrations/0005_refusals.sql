-- Refused launches, for the admin page: what arrived, what we checked, and a hint. Bounded per
-- bucket (a known consumer's key, or '' for all unknown keys) and cleared with the consumer.
-- No values of user fields are stored.
CREATE TABLE refusals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    consumer_key TEXT NOT NULL,
    reason       TEXT NOT NULL,
    hint         TEXT NOT NULL, -- JSON of lti::diagnosis::Hint
    signed_url   TEXT NOT NULL,
    base_string  TEXT NOT NULL,
    param_names  TEXT NOT NULL,
    remote_addr  TEXT NOT NULL,
    user_agent   TEXT NOT NULL
);
CREATE INDEX refusals_by_bucket ON refusals (bucket, id);
CREATE INDEX refusals_by_time ON refusals (at);
