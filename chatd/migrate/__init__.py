"""``chatd migrate``: move a SQLite chatd to a ScyllaDB/Cassandra keyspace.

``source`` reads the SQLite database (read-only, one snapshot), ``steps`` says
what each step reads and writes, ``runner`` copies step by step with a
checkpoint in the target keyspace, ``verify`` compares both sides, and
``progress`` reports. The rows written, derived tables and sequencer state
included, are the ScyllaDB adapter's business: ``chatd.storage.scylla.importer``.
"""
