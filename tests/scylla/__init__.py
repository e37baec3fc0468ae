"""ScyllaDB adapter tests beyond the storage conformance kit (chatd/testing/storage)."""
