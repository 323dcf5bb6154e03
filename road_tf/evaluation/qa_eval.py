"""Runs an answer function over SQuAD questions and turns its outputs into the official files.

The answer function is `QAAnswerer.nbest_function()` during training or a SavedModel's
`serving_default` in `python -m road_tf.predict`: both see the same questions in the same
batches, so they return the same answers.
"""

import sys

import numpy as np

from road_tf.evaluation.answerer import VERY_NEGATIVE, null_threshold_from_probability
from road_tf.evaluation.squad_metric import squad_v2_metrics


def _progress(done, total, stream):
    """Rewrites one progress line on `stream`."""
    stream.write(f"\r  answered {done}/{total} questions")
    if done == total:
        stream.write("\n")
    stream.flush()


def answer_questions(answer_fn, examples, batch_size, progress=False):
    """Calls `answer_fn` on the questions of `examples`, `batch_size` at a time, in order.

    Args:
        answer_fn: (question tf.string [B], context tf.string [B]) -> dict of [B, ...] tensors.
        examples: list of QAExample.
        progress: write a progress line to stderr.
    Returns:
        dict {output key: np.ndarray [N, ...]} over the N questions (strings decoded to str).
    """
    import tensorflow as tf

    parts = {}
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin:begin + batch_size]
        out = answer_fn(tf.constant([e.question for e in chunk]), tf.constant([e.context for e in chunk]))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
        if progress:
            _progress(begin + len(chunk), len(examples), sys.stderr)
    return {key: _decoded(np.concatenate(values)) for key, values in parts.items()}


def _decoded(array):
    """Byte-string arrays as str arrays (UTF-8); other arrays unchanged."""
    if array.dtype.kind in ("S", "O"):
        return np.vectorize(lambda value: value.decode("utf-8"), otypes=[object])(array) if array.size else array
    return array


def squad_outputs(examples, outputs):
    """({qid: answer text}, {qid: no-answer probability}) of the official SQuAD 2.0 files."""
    predictions = {e.qid: str(text) for e, text in zip(examples, outputs["answer"])}
    na_probs = {e.qid: float(p) for e, p in zip(examples, outputs["no_answer_probability"])}
    return predictions, na_probs


def nbest_lists(examples, outputs):
    """{qid: [{text, start_char, end_char, score}, ...]}, best first, empty slots left out."""
    lists = {}
    for row, example in enumerate(examples):
        valid = outputs["nbest_score"][row] > VERY_NEGATIVE / 2
        lists[example.qid] = [
            {"text": str(outputs["nbest_text"][row][i]), "start_char": int(outputs["nbest_start_char"][row][i]),
             "end_char": int(outputs["nbest_end_char"][row][i]), "score": float(outputs["nbest_score"][row][i])}
            for i in np.flatnonzero(valid)
        ]
    return lists


def tuned_null_threshold(examples, outputs):
    """(best dev F1, the null-score threshold reaching it) over every threshold.

    Every question is given its best span (whatever the current threshold) and the official
    `best_f1` sweep over its no-answer probability picks the cut; the probability cut p becomes the
    null-score threshold logit(p) (see `road_tf.evaluation.answerer`).
    """
    always = {e.qid: str(text) for e, text in zip(examples, outputs["best_text"])}
    na_probs = {e.qid: float(p) for e, p in zip(examples, outputs["no_answer_probability"])}
    metrics = squad_v2_metrics(examples, always, na_probs)
    return metrics["best_f1"], null_threshold_from_probability(metrics["best_f1_thresh"])
