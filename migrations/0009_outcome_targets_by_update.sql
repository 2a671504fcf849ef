-- Learners' grade records are deleted once their last launch is older than `outcome_target_ttl`
-- (see store::outcomes::prune): the pruning finds them through this index, oldest first.
-- Never edit once shipped: add a new file.
CREATE INDEX outcome_targets_by_update ON outcome_targets (updated_at);
