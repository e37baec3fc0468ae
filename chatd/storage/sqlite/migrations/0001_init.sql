-- chatd schema v1. Times are integer milliseconds since the epoch.

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,          -- stored lower-case
    display_name    TEXT NOT NULL,
    status_message  TEXT NOT NULL DEFAULT '',
    avatar_media_id TEXT,
    password_hash   TEXT NOT NULL,
    is_admin        INTEGER NOT NULL DEFAULT 0,
    banned          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    last_seen       INTEGER
);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX devices_by_user ON devices(user_id);

-- Append-only feed of revoked devices, polled by every node to close sockets.
CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL,
    at          INTEGER NOT NULL
);

CREATE TABLE contacts (
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    contact_id  TEXT NOT NULL REFERENCES users(user_id),
    name        TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX contacts_by_contact ON contacts(contact_id);

CREATE TABLE invites (
    code        TEXT PRIMARY KEY,
    uses_left   INTEGER NOT NULL,
    expires_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE chats (
    chat_id         TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    direct_key      TEXT UNIQUE,                   -- "low_user_id:high_user_id" for direct chats
    title           TEXT,
    description     TEXT,
    avatar_media_id TEXT,
    created_by      TEXT,
    created_at      INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_activity   INTEGER NOT NULL
);

CREATE TABLE members (
    chat_id       TEXT NOT NULL REFERENCES chats(chat_id),
    user_id       TEXT NOT NULL REFERENCES users(user_id),
    role          TEXT NOT NULL DEFAULT 'member',
    joined_at     INTEGER NOT NULL,
    joined_seq    INTEGER NOT NULL DEFAULT 0,
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    read_seq      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id);

CREATE TABLE messages (
    chat_id          TEXT NOT NULL REFERENCES chats(chat_id),
    seq              INTEGER NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    sender_id        TEXT NOT NULL,
    sender_device_id TEXT NOT NULL,
    type             TEXT NOT NULL,
    content          TEXT NOT NULL,
    client_msg_id    TEXT NOT NULL,
    media_id         TEXT,
    reply_to         TEXT,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_idempotency ON messages(sender_id, client_msg_id);

-- Per-device delivery watermark: the device has every message up to delivered_seq.
CREATE TABLE device_cursors (
    device_id     TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    delivered_seq INTEGER NOT NULL,
    PRIMARY KEY (device_id, chat_id)
) WITHOUT ROWID;
