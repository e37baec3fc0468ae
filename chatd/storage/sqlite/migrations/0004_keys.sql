-- End-to-end encryption keys (public halves only), per device.
CREATE TABLE device_keys (
    device_id         TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    identity_key      TEXT NOT NULL,
    signed_key_id     INTEGER NOT NULL,
    signed_public_key TEXT NOT NULL,
    signed_signature  TEXT NOT NULL,
    updated_at        INTEGER NOT NULL
) WITHOUT ROWID;
-- One-time prekeys: a claim deletes the row it hands out, in one statement.
CREATE TABLE one_time_prekeys (
    device_id  TEXT NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    PRIMARY KEY (device_id, key_id)
) WITHOUT ROWID;
