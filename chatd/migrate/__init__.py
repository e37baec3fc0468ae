"""``chatd migrate``: move a SQLite chatd to a ScyllaDB/Cassandra keyspace.

``source`` reads the SQLite database (read-only, one snapshot), ``runner`` copies
it step by step with a checkpoint in the target keyspace, and ``verify`` compares
both sides. The rows written, derived tables and sequencer state included, are
the ScyllaDB adapter's business: ``chatd.storage.scylla.importer``.
"""
