"""Cluster membership and routing; ``local`` is the cluster of one."""
