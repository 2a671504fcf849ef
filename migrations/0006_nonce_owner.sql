-- Which launch spent each nonce (its session's id): the launch writer records many launches in
-- one statement per table and tells its own nonces from replays by this mark.
ALTER TABLE nonces ADD COLUMN spent_by TEXT;
