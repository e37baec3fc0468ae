-- Dead push notifications are deleted after [push] dead_retention_days: the
-- sweep finds them by age.
CREATE INDEX push_dead_by_age ON push_dead (dead_at);
