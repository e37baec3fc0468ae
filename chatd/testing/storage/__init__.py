"""The storage conformance kit: chatd's storage contract suite, as a pytest plugin.

Every case talks to the ``chatd.core.ports.storage.Storage`` protocol only, so a
storage plugin passes it unchanged or has a bug. Run it on a plugin's factory
(the callable its ``chatd.storage`` entry point names)::

    pytest --pyargs chatd.testing.storage --storage-factory=my_plugin:create

Several factories, comma-separated, run every case once per factory. What a
factory must do for the kit: ``kit.py``; the guide: docs/plugins.md.
"""
