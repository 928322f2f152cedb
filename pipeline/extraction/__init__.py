"""Extraction: decode each dataset, detect and align faces, write the frame tables."""
