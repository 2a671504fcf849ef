-- Grade passback (LTI 1.1 Basic Outcomes): where each learner's result lives in the LMS, per
-- consumer, resource link and user, from their latest launch, so staff can grade after the
-- learner has left. Times are integer Unix seconds. Never edit once shipped: add a new file.

CREATE TABLE outcome_targets (
    consumer_key     TEXT NOT NULL,
    resource_link_id TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    service_url      TEXT NOT NULL, -- lis_outcome_service_url
    sourcedid        TEXT NOT NULL, -- lis_result_sourcedid (Moodle's is JSON)
    display_name     TEXT NOT NULL,
    last_score       REAL,          -- the score the LMS last confirmed; NULL for none or unknown
    score_known_at   INTEGER,       -- when last_score was learned; NULL when never asked
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (consumer_key, resource_link_id, user_id)
);
