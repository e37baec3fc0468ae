-- End-to-end encrypted messages: the message row says whether it is encrypted
-- (its content is then empty); each recipient device's ciphertext is a row of
-- its own, deleted when that device acknowledges the message or at expiry.
ALTER TABLE messages ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE ciphertexts (
    device_id  TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    stored_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, chat_id, seq)
) WITHOUT ROWID;
CREATE INDEX ciphertexts_by_time ON ciphertexts (stored_at);
-- Encrypted sends count the members' devices holding a bundle: find them by user.
CREATE INDEX device_keys_by_user ON device_keys (user_id);
-- A revoked device's bundle is deleted at once; drop any kept from before.
DELETE FROM one_time_prekeys WHERE device_id IN
    (SELECT device_id FROM devices WHERE revoked_at IS NOT NULL);
DELETE FROM device_keys WHERE device_id IN
    (SELECT device_id FROM devices WHERE revoked_at IS NOT NULL);
