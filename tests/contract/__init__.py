"""Storage contract suite (see conftest.py)."""
