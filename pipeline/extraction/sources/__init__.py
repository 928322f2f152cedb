"""Readers of the four datasets and of unlabelled input, plus the synthetic generator."""
