-- Administrative changes, newest first by (time, entry_id) for GET /admin/audit.
CREATE TABLE audit (
    time       INTEGER NOT NULL,
    entry_id   TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    target_id  TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (time, entry_id)
) WITHOUT ROWID;
