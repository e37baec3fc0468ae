"""The built-in push providers, one module each, registered under ``chatd.push``."""
