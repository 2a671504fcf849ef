-- When the staff page last tried to read each learner's score, successful or not: a refresh reads
-- the learners tried longest ago first, so that learners whose LMS keeps failing cannot hold the
-- others back refresh after refresh. Never edit once shipped: add a new file.
ALTER TABLE outcome_targets ADD COLUMN read_tried_at INTEGER;
