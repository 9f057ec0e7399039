"""Duplicate detection: exact, near, crop and similar tiers, grouped by union-find."""
