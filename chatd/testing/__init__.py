"""Test kits shipped with chatd for plugin authors (see docs/plugins.md), and faults a
test can switch on in a running server (``faults``; never on in normal use)."""
