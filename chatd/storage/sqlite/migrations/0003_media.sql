-- Media records (the bytes live in the blob store, named by sha256).
-- referenced: set to 1 by the message append that first carries the media, in the
-- same transaction; the retention job looks only at rows where it is still 0.
CREATE TABLE media (
    media_id         TEXT PRIMARY KEY,
    uploader_id      TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    mime_type        TEXT NOT NULL,
    size             INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    filename         TEXT,
    width            INTEGER,
    height           INTEGER,
    duration_ms      INTEGER,
    thumbnail_sha256 TEXT,
    thumbnail_mime   TEXT,
    thumbnail_size   INTEGER,
    referenced       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX media_by_sha ON media(sha256);
CREATE INDEX media_by_thumbnail ON media(thumbnail_sha256) WHERE thumbnail_sha256 IS NOT NULL;
CREATE INDEX media_unreferenced ON media(created_at) WHERE referenced = 0;
-- Which messages carry a media (access checks: who can see one of them).
CREATE INDEX messages_by_media ON messages(media_id) WHERE media_id IS NOT NULL;
