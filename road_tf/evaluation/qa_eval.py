"""Runs an answer function over SQuAD questions and turns its outputs into the official files.

The answer function is `QAAnswerer.nbest_function()` during training or a SavedModel's
`serving_default` in `python -m road_tf.predict`: both see the same questions in the same
batches, so they return the same answers.
"""

import hashlib
import sys

import numpy as np

from road_tf.evaluation.answerer import VERY_NEGATIVE
from road_tf.evaluation.squad_metric import raw_scores, squad_v2_metrics


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
        progress: write a progress line to stderr (ended early when an error stops the answers).
    Returns:
        dict {output key: np.ndarray [N, ...]} over the N questions (strings decoded to str).
    Raises:
        UnicodeDecodeError: a string output is not UTF-8 (each batch is decoded as it arrives, so the
            first batch holding one stops the loop).
    """
    import tensorflow as tf

    parts, done = {}, 0
    try:
        for begin in range(0, len(examples), batch_size):
            chunk = examples[begin:begin + batch_size]
            out = answer_fn(tf.constant([e.question for e in chunk]), tf.constant([e.context for e in chunk]))
            for key, value in out.items():
                parts.setdefault(key, []).append(_decoded(value.numpy()))
            done = begin + len(chunk)
            if progress:
                _progress(done, len(examples), sys.stderr)
    finally:
        if progress and 0 < done < len(examples):
            sys.stderr.write("\n")  # an error stops the loop: its message gets a line of its own
    return {key: np.concatenate(values) for key, values in parts.items()}


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


def no_answer_margins(outputs):
    """Each question's null score minus its best span score, [N] (+inf where no span is valid),
    subtracted in float32 as the served graph does and returned as float64: "no answer" exactly
    when it exceeds the null-score threshold (a float32 margin is a threshold the graph keeps exactly).

    Args:
        outputs: the answer function's arrays `null_score`, `score` and `nbest_score` ([N], [N], [N, n]).
    """
    has_span = np.asarray(outputs["nbest_score"])[:, 0] > VERY_NEGATIVE / 2
    margin = np.asarray(outputs["null_score"], np.float32) - np.asarray(outputs["score"], np.float32)
    return np.where(has_span, margin.astype(np.float64), np.inf)


def tuned_null_threshold(examples, outputs):
    """(best dev F1, the null-score threshold reaching it) over every threshold.

    Every question is given its best span (whatever the current threshold), and the threshold is
    the no-answer margin (`no_answer_margins`) up to which answering scores best: the official
    `best_f1` sweep, run on the margins instead of the probability sigmoid(margin), which ties and
    rounds to 1.0 above a margin of about 17 in float32, and cut only between distinct margins, so
    that the F1 returned is the F1 the threshold gives.
    """
    return _tuned_cut(examples, outputs["best_text"], no_answer_margins(outputs))


def _tuned_cut(examples, best_text, margins):
    """(best F1, margin cut): answering the questions whose margin is <= cut scores best.

    Args:
        examples: N QAExample; best_text: [N] each question's best span; margins: float64 [N].
    Returns:
        F1 in [0, 100] and the cut: a question's margin, or VERY_NEGATIVE (answer none) when no
        cut beats answering nothing. A tie keeps the lower cut, as the official sweep does.
    """
    answered = {e.qid: str(text) for e, text in zip(examples, best_text)}
    _, answered_f1 = raw_scores(examples, answered)
    _, silent_f1 = raw_scores(examples, {e.qid: "" for e in examples})
    gain = np.array([answered_f1[e.qid] - silent_f1[e.qid] for e in examples])
    order = np.argsort(margins, kind="stable")
    sorted_margins, totals = margins[order], np.cumsum(gain[order])
    ends = np.flatnonzero((sorted_margins[:-1] != sorted_margins[1:]).tolist() + [True])
    ends = ends[np.isfinite(sorted_margins[ends])]
    best, cut = 0.0, VERY_NEGATIVE
    if ends.size and totals[ends].max() > 0:
        end = ends[np.argmax(totals[ends])]
        best, cut = totals[end], float(sorted_margins[end])
    return 100.0 * (sum(silent_f1.values()) + best) / len(examples), cut


def best_span_f1(examples, best_text):
    """The F1 of the answerable questions when each is answered with its best span, whatever its
    null score: how well the model finds answers, apart from when it abstains.

    Args:
        examples: N QAExample; best_text: [N] each question's best span ("" where none is valid).
    Returns:
        F1 in [0, 100], or None when no question is answerable.
    """
    answerable = [(example, str(text)) for example, text in zip(examples, best_text) if example.answers]
    if not answerable:
        return None
    _, f1 = raw_scores([example for example, _ in answerable], {example.qid: text for example, text in answerable})
    return 100.0 * sum(f1.values()) / len(answerable)


def no_answer_auc(examples, outputs):
    """The ROC AUC of the no-answer margin (`no_answer_margins`) as a score of "unanswerable": the
    chance that an unanswerable question has a larger margin than an answerable one (ties count
    half), 0.5 for a margin that tells them apart no better than chance. The threshold picks one
    point of this curve; the AUC measures the margin itself.

    Args:
        examples: N QAExample; outputs: the answer function's arrays (those of `no_answer_margins`).
    Returns:
        AUC in [0, 1], or None unless both kinds of question occur.
    """
    unanswerable = np.array([not example.answers for example in examples], dtype=bool)
    positives, negatives = int(unanswerable.sum()), int((~unanswerable).sum())
    if not positives or not negatives:
        return None
    values, inverse, counts = np.unique(no_answer_margins(outputs), return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct margin, ties averaged
    rank_sum = mean_rank[inverse][unanswerable].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def article_fold(example, folds):
    """The fold (0..folds-1) of `example`'s article: sha256 of its title (of its context if untitled)."""
    key = (example.title or example.context).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % folds


def held_out_tuned_f1(examples, outputs, folds=2):
    """The F1 of a dev-tuned no-answer threshold on questions it was not tuned on.

    The questions are split by article into `folds` groups (`article_fold`); each group is
    answered at the threshold tuned (`tuned_null_threshold`'s sweep) on the other groups, and the
    F1 is taken over all questions. Unlike `tuned_f1`, which scores the threshold on the questions
    that chose it, this estimates what the served threshold gives on unseen questions.

    Args:
        examples: N QAExample; outputs: the answer function's arrays (`best_text` and those of
            `no_answer_margins`).
    Returns:
        F1 in [0, 100], or None when the questions come from fewer than `folds` groups.
    """
    group = np.array([article_fold(example, folds) for example in examples])
    if len(set(group.tolist())) < folds:
        return None
    best_text = np.asarray(outputs["best_text"], dtype=object)
    margins = no_answer_margins(outputs)
    total = 0.0
    for fold in range(folds):
        tune, held = np.flatnonzero(group != fold), np.flatnonzero(group == fold)
        _, cut = _tuned_cut([examples[i] for i in tune], best_text[tune], margins[tune])
        predictions = {examples[i].qid: str(best_text[i]) if margins[i] <= cut else "" for i in held}
        total += squad_v2_metrics([examples[i] for i in held], predictions)["f1"] * len(held)
    return total / len(examples)
