"""Presence implementations; ``local`` keeps it in this process."""
