"""Bulk import into a chatd keyspace (``chatd migrate``): rows, not appends.

A migration copies finished state, so it does not go through the stores' write
paths (one LWT per message, one per username...): it writes the rows those paths
would have left behind, derived tables and sequencer state included, as plain
idempotent upserts, batched per partition. What makes that safe:

* **Timestamps.** Every cell is written ``USING TIMESTAMP``: max registers
  (watermarks, ``last_seq``/``last_activity``, cursors) with their value, as
  ``marks.py`` does; everything else with ``IMPORT_TS`` (1 µs after the epoch).
  So any later write by a chatd node, plain or LWT, wins over an imported cell
  whatever the clocks of the importing machine and the cluster say (a plain
  write with the importer's clock could shadow a later Paxos write, e.g. a group
  change's ``epoch``), and writing a row twice (a resumed run) changes nothing.
* **Sequencer state.** Each message bucket gets the ``epoch``/``epoch_seq`` the
  sequencer would have left (the chat version after the bucket's last message,
  and the seq of the system message that set it), the chat partition its
  ``version`` and ``last_seq``, so the next append claims ``last_seq + 1`` in the
  right bucket under the right fence, as after a restart.
* **Idempotency keys** are stored with their seq, as a finished append leaves
  them: a retried ``client_msg_id`` finds the original message.
* **Media records**, written only by LWT on the serving path, are plain writes
  here: nothing serves the keyspace during an import, and ``IMPORT_TS`` loses to
  every later LWT, so ``referenced`` and retention deletes behave as usual.

Not imported: the revocation feed (``revocations``, ``feed_head``): revoked
devices are copied revoked, and nodes read the feed from its end on start, so
past entries would never be read. The system messages' ``change`` payload is
not needed either: the chat partition is written at the version it produced.

By job: ``tables`` is the importer's view of the schema (a test checks it
against the live keyspace, so a new table or column fails loudly until it is
handled); ``records`` says what each record becomes; ``writer`` writes the rows,
keeps the import's checkpoint and reads tables back; ``images`` is the row image
both sides of the verification are compared as.
"""
