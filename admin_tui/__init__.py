"""chatd's admin console: a Textual TUI over the admin REST API (``chatd admin``)."""
