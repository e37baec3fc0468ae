-- Groups: a version per chat for compare-and-set changes, and past memberships
-- (left_seq: the seq of the leave/remove event, the last message still visible).
ALTER TABLE chats ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN left_seq INTEGER;
CREATE INDEX chats_by_kind ON chats(kind, chat_id);
