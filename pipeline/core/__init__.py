"""Shared foundations: params, labels, tables, shards, images, provenance, safe file writes."""
