"""Storage adapters: implementations of ``chatd.core.ports.storage.Storage``."""
