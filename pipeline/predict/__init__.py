"""Predict: run a trained bundle on new videos and images and write labelled outputs."""
