-- Who may add a user to groups: 'everyone' or 'contacts' (the user's contacts).
ALTER TABLE users ADD COLUMN group_add TEXT NOT NULL DEFAULT 'everyone';
