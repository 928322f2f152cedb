"""Readers of the four datasets and of unlabelled input."""
