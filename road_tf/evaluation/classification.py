"""Classification metrics from integer label arrays: accuracy, macro-F1, binary F1.

All values are fractions in [0, 1]. F1 of a class is 2·TP / (2·TP + FP + FN), and 0 when that
class never occurs in the labels nor the predictions.
"""

import numpy as np


def accuracy(labels, predictions):
    """Fraction of positions where predictions == labels. Both: int arrays of shape [N], N > 0."""
    labels, predictions = _checked(labels, predictions)
    return float(np.mean(labels == predictions))


def class_f1(labels, predictions, positive):
    """F1 of class `positive` against all others. labels, predictions: int arrays [N]."""
    labels, predictions = _checked(labels, predictions)
    true_pos = int(np.sum((predictions == positive) & (labels == positive)))
    false_pos = int(np.sum((predictions == positive) & (labels != positive)))
    false_neg = int(np.sum((predictions != positive) & (labels == positive)))
    denominator = 2 * true_pos + false_pos + false_neg
    return 2 * true_pos / denominator if denominator else 0.0


def macro_f1(labels, predictions):
    """Unweighted mean of class_f1 over every class seen in labels or predictions, all classes counted
    in one pass (O(N log N) for N labels, however many distinct classes)."""
    labels, predictions = _checked(labels, predictions)
    classes, index = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    gold, guess = index[:labels.size], index[labels.size:]
    true_pos = np.bincount(gold[gold == guess], minlength=classes.size)
    # 2·TP + FP + FN = (TP + FN) + (TP + FP): how often the class is the label plus how often it is predicted
    seen = np.bincount(gold, minlength=classes.size) + np.bincount(guess, minlength=classes.size)
    return float(np.mean(2 * true_pos / seen))


def classification_metrics(labels, predictions):
    """{accuracy, macro_f1, total}, plus `f1` (F1 of class 1) when all values are 0 or 1."""
    labels, predictions = _checked(labels, predictions)
    result = {"accuracy": accuracy(labels, predictions), "macro_f1": macro_f1(labels, predictions)}
    if np.isin(np.union1d(labels, predictions), (0, 1)).all():
        result["f1"] = class_f1(labels, predictions, 1)
    result["total"] = int(labels.size)
    return result


def _checked(labels, predictions):
    """Both inputs as int64 arrays of the same non-empty shape [N]; ValueError otherwise."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D integer array, got shape {values.shape} dtype {values.dtype}")
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have the same non-zero length")
    return labels.astype(np.int64), predictions.astype(np.int64)
