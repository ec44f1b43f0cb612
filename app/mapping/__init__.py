"""Mapping: the role catalog, mapping rules (pure) and their evaluation."""
