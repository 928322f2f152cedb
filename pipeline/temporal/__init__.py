"""Temporal: per-frame features and the GRU teacher, students and ensemble over them."""
