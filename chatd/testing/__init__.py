"""Test kits shipped with chatd for plugin authors (see docs/plugins.md)."""
