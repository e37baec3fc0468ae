"""Security adapters (password hashing)."""
