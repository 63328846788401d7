"""Curation: merge sources, filter, deduplicate, split by dialog."""
