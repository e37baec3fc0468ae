-- Push notifications: each device's target, the outbox of waiting notifications
-- (one per device and chat) and the dead ones kept for admins.
CREATE TABLE push_targets (
    device_id     TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    provider      TEXT NOT NULL,
    token         TEXT,
    endpoint      TEXT,
    p256dh        TEXT,
    auth          TEXT,
    registered_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX push_targets_by_user ON push_targets (user_id);
CREATE TABLE push_outbox (
    device_id   TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    -- A worker's lease: nobody else claims the item before this time (ms).
    claim_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, chat_id)
) WITHOUT ROWID;
CREATE INDEX push_outbox_due ON push_outbox (due_at);
CREATE TABLE push_dead (
    delivery_id TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    dead_at     INTEGER NOT NULL
) WITHOUT ROWID;
