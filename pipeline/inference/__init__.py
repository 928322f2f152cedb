"""Inference: run a model or an ensemble over frames and combine or smooth its outputs."""
