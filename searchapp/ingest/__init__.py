"""Ingest: scan folders, diff against the catalog, decode, cut regions, encode, commit."""
