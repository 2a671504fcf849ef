-- When the staff page last forgot a learner's score (the LMS answered `processing`, or a write's
-- answer left it open whether the LMS took it): a read asked before then cannot bring an older
-- score back (see store::outcomes::set_last_score). Never edit once shipped: add a new file.
ALTER TABLE outcome_targets ADD COLUMN score_forgotten_at INTEGER;
