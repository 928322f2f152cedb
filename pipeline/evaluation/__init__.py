"""Evaluation: the ABAW metrics, paired intervals, baselines and report figures."""
