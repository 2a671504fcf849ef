-- A random mark of the launch that spent each nonce: the launch writer records many launches in
-- one statement per table and tells the launches that own their nonce from replays by it.
ALTER TABLE nonces ADD COLUMN spent_by TEXT;
