"""Widgets the admin screens share."""
