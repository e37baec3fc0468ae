-- After a failed write (a full disk), /health probes with a write of about one
-- large message (64 KiB) here, inserted and deleted in one transaction.
CREATE TABLE write_probe (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
