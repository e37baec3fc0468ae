"""chatd: a self-hosted chat server in one process."""

__version__ = "0.1.0"
