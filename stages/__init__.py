"""Thin click commands, one per DVC stage: read options, call ``pipeline``, write outputs."""
