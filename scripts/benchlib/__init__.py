"""Workloads of scripts/bench.py, one module each; bench.py is the only entry point."""
