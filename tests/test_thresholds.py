"""Per-AU thresholds tuned for F1."""
import numpy as np

from pipeline.evaluation.thresholds import tune_thresholds


def test_tuned_thresholds_take_the_lowest_of_tied_best_and_predict_at_prob_equal_threshold():
    grid = [0.1, 0.3, 0.5, 0.7]
    labels = np.array([[0, 1], [1, 0]])
    probs = np.array([[0.2, 0.5], [0.6, 0.3]])
    # AU 0: F1 at the grid = 2/3, 1, 1, 0 -> the lower of the tied 0.3 and 0.5.
    # AU 1: prob >= threshold: F1 = 2/3, 2/3, 1, 0 -> 0.5 (with prob > threshold it would be 0.3).
    np.testing.assert_array_equal(tune_thresholds(labels, probs, grid), [0.3, 0.5])
