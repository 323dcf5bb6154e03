"""The SQuAD 2.0 metric, following the rules of the official `evaluate-v2.0.py`.

Rules (all scores are percentages, as in the official script):
- normalize: lowercase, drop `string.punctuation`, replace the whole words a/an/the by a space,
  collapse whitespace.
- gold answers of a question: the texts of its answers that normalize to something non-empty, or
  [""] when none does (so an unanswerable question is right only for a prediction that
  normalizes to "").
- exact: max over golds of normalized equality; F1: max over golds of the token-overlap F1, where
  F1 is int(gold tokens == predicted tokens) when either token list is empty.
- a question with no prediction is logged ("Missing prediction for QID") and left out; `total`
  counts the predicted questions only, as in the official script.
- `na_prob_thresh`: a prediction whose no-answer probability is > the threshold counts as "no
  answer" (score 1 for an unanswerable question, 0 otherwise) before averaging. Without
  `na_probs`, every probability is 0.0, as in the official script.
- with `na_probs`: `best_exact`/`best_f1` and their thresholds from the official sweep over
  questions in increasing no-answer probability (stable order of `na_probs` for ties).

When every question has a prediction, every number equals the official script's. With missing
predictions the official script stops with a KeyError in its HasAns/NoAns breakdown; here the
breakdown and the best-threshold sweep count only the predicted questions, like `total`.
"""

import collections
import logging
import re
import string

logger = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text):
    """Lowercases, removes punctuation and the articles a/an/the, and collapses whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(gold_tokens, predicted):
    """Token-overlap F1 of a gold and a prediction, in [0, 1] (int when 0 or 1 by the empty rule).

    Args:
        gold_tokens: the gold's normalized tokens (list of str); predicted: collections.Counter of
            the prediction's, which a question's golds share (a long prediction is counted once).
    """
    predicted_count = sum(predicted.values())
    if not gold_tokens or not predicted_count:
        return int(not gold_tokens and not predicted_count)
    overlap = sum((collections.Counter(gold_tokens) & predicted).values())
    if overlap == 0:
        return 0
    precision = overlap / predicted_count
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example):
    """The set of normalized texts a prediction is scored against: the answers' that are not empty,
    else {""} (the official script's golds, normalized once and each distinct one once)."""
    golds = {normalize_answer(answer.text) for answer in example.answers} - {""}
    return golds or {""}


def raw_scores(examples, predictions):
    """Per-question exact and F1 before any no-answer threshold.

    Args:
        examples: list of QAExample (the data set).
        predictions: {qid: predicted text}; questions absent from it are logged and skipped.

    Returns:
        (exact, f1): two dicts {qid: score in [0, 1]} in data set order, predicted questions only.
    """
    exact, f1 = {}, {}
    for example in examples:
        if example.qid not in predictions:
            logger.warning("Missing prediction for %s", example.qid)
            continue
        prediction = normalize_answer(predictions[example.qid])
        predicted = collections.Counter(prediction.split())
        golds = gold_answers(example)
        exact[example.qid] = max(int(gold == prediction) for gold in golds)
        f1[example.qid] = max(token_f1(gold.split(), predicted) for gold in golds)
    return exact, f1


def apply_no_answer_threshold(scores, na_probs, has_answer, na_prob_thresh):
    """Replaces the score of each question whose na_prob > threshold by float(not has_answer)."""
    return {qid: float(not has_answer[qid]) if na_probs[qid] > na_prob_thresh else score
            for qid, score in scores.items()}


def best_threshold(predictions, scores, na_probs, has_answer):
    """The official sweep for the no-answer threshold that maximizes the total score.

    Starts from "everything predicted no-answer" (score = number of unanswerable questions), then
    walks questions in increasing na_prob, switching each to its prediction: an answerable one
    adds its raw score, an unanswerable one loses 1 if its prediction is non-empty.

    Returns:
        (best score as a percentage of the scored questions, the na_prob reached at the best point
        (0.0 if no switch helps)).
    """
    current = sum(1 for qid in scores if not has_answer[qid])
    best, best_thresh = current, 0.0
    for qid in sorted(na_probs, key=na_probs.__getitem__):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2_metrics(dataset_examples, predictions, na_probs=None, na_prob_thresh=1.0):
    """Scores predictions on a SQuAD 2.0 data set.

    Args:
        dataset_examples: list of QAExample with unique qids.
        predictions: {qid: answer text}; "" means "no answer". Ids not in the data are ignored.
        na_probs: optional {qid: probability that the question has no answer}; it must cover
            every predicted question of the data set.
        na_prob_thresh: predictions with na_prob > this count as "no answer".

    Returns:
        dict with exact, f1, total, then HasAns_exact/f1/total and NoAns_exact/f1/total when the
        scored questions include such questions, then (with na_probs) best_exact,
        best_exact_thresh, best_f1, best_f1_thresh.

    Raises:
        ValueError: duplicate qids, no prediction for any question, or na_probs missing a
            predicted question.
    """
    has_answer = {example.qid: not example.is_impossible for example in dataset_examples}
    if len(has_answer) != len(dataset_examples):
        raise ValueError("the data set has duplicate question ids")
    exact, f1 = raw_scores(dataset_examples, predictions)
    if not exact:
        raise ValueError("no question of the data set has a prediction")
    probs = {qid: 0.0 for qid in predictions} if na_probs is None else na_probs
    unprobed = [qid for qid in exact if qid not in probs]
    if unprobed:
        raise ValueError(f"na_probs has no value for {len(unprobed)} predicted question(s), e.g. {unprobed[0]}")
    exact_thresh = apply_no_answer_threshold(exact, probs, has_answer, na_prob_thresh)
    f1_thresh = apply_no_answer_threshold(f1, probs, has_answer, na_prob_thresh)
    result = _averages(exact_thresh, f1_thresh, list(exact), "")
    for prefix, wanted in (("HasAns_", True), ("NoAns_", False)):
        qids = [qid for qid in exact if has_answer[qid] == wanted]
        if qids:
            result.update(_averages(exact_thresh, f1_thresh, qids, prefix))
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = best_threshold(predictions, exact, na_probs, has_answer)
        result["best_f1"], result["best_f1_thresh"] = best_threshold(predictions, f1, na_probs, has_answer)
    return result


def _averages(exact, f1, qids, prefix):
    """{prefix+"exact", prefix+"f1", prefix+"total"}: percentages over `qids` (a non-empty list)."""
    return {
        f"{prefix}exact": 100.0 * sum(exact[qid] for qid in qids) / len(qids),
        f"{prefix}f1": 100.0 * sum(f1[qid] for qid in qids) / len(qids),
        f"{prefix}total": len(qids),
    }
