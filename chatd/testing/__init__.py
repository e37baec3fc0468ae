"""Faults a test can switch on in a running server; never on in normal use."""
