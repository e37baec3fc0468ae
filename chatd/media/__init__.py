"""Media adapters: the local blob store, type sniffing, and the decoding worker pool."""
