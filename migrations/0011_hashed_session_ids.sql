-- Sessions and hand-off tokens are keyed by a hash of their cookie value or token (see
-- store::sessions::stored_id), and a hand-off row holds its session id sealed under the token, so
-- a copy of the database (a backup) opens no session. Rows stored before held the values
-- themselves: they are dropped, and their users launch again from the LMS.
-- Never edit once shipped: add a new file.
DELETE FROM handoffs;
DELETE FROM sessions;
ALTER TABLE handoffs ADD COLUMN sealed_session TEXT NOT NULL DEFAULT '';
