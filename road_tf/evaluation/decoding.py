"""N-best answer-span decoding across the windows of each question, in NumPy.

Each window (feature) holds `example_index` (which question it came from) and `offsets` [L, 2]:
the (start, end) character offsets into that question's context for context tokens, and (-1, -1)
for every other position ([CLS], question, [SEP], padding). Position 0 is [CLS], the null span.

Per question:
- null score = min over its windows of start_logits[0] + end_logits[0];
- candidates, in every window: the `n_best_size` highest start logits among context tokens × the
  `n_best_size` highest end logits among context tokens, kept when start <= end and the span is at
  most `max_answer_length` tokens; score = start logit + end logit; text =
  context[offsets[start][0]:offsets[end][1]];
- n-best: the `n_best_size` best candidates over all windows, one per character span (the best
  window's score when overlapping windows yield the same span), best first;
- prediction: "" when null score - best span score > `null_score_diff_threshold` (or when no
  span is valid), else the best span's text;
- no-answer probability: exp(null) / (exp(null) + sum of exp(score) over the n-best spans), a
  softmax over the null score and the n-best span scores; 1.0 when there is no valid span.
"""

import numpy as np


def decode_spans(examples, features, start_logits, end_logits, n_best_size=20, max_answer_length=30,
                 null_score_diff_threshold=0.0):
    """Decodes answers for every question.

    Args:
        examples: list of QAExample; windows refer to them by index.
        features: list of dicts with `example_index` (int) and `offsets` ([L, 2] ints), or one dict
            with `example_index` [N] and `offsets` [N, L, 2].
        start_logits, end_logits: float arrays [N, L], one row per window.
        n_best_size: candidates per side per window, and length of each n-best list.
        max_answer_length: longest answer, in tokens.
        null_score_diff_threshold: predict "" when null - best span score exceeds this.

    Returns:
        (predictions {qid: text}, na_probs {qid: float}, nbest {qid: list of dict(text,
        start_char, end_char, score)}), covering every example (a question without windows gets
        "", 1.0 and []).
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    example_index, offsets = _feature_arrays(features, start_logits.shape)
    if end_logits.shape != start_logits.shape:
        raise ValueError(f"start_logits {start_logits.shape} and end_logits {end_logits.shape} differ")
    if example_index.size and not (0 <= example_index.min() and example_index.max() < len(examples)):
        raise ValueError(f"example_index must lie in [0, {len(examples)})")
    null_scores = np.full(len(examples), np.inf)
    np.minimum.at(null_scores, example_index, start_logits[:, 0] + end_logits[:, 0])
    spans = _window_candidates(offsets, start_logits, end_logits, n_best_size, max_answer_length)
    per_example = _group_by_example(spans, example_index, len(examples))
    predictions, na_probs, nbest = {}, {}, {}
    for index, example in enumerate(examples):
        best = _nbest(example.context, per_example[index], n_best_size)
        predictions[example.qid], na_probs[example.qid] = _choose(best, null_scores[index], null_score_diff_threshold)
        nbest[example.qid] = best
    return predictions, na_probs, nbest


def _feature_arrays(features, logits_shape):
    """Returns (example_index int [N], offsets int [N, L, 2]) from either accepted feature layout."""
    if isinstance(features, dict):
        example_index = np.asarray(features["example_index"], dtype=np.int64).reshape(-1)
        offsets = np.asarray(features["offsets"], dtype=np.int64)
    elif features:
        example_index = np.array([feature["example_index"] for feature in features], dtype=np.int64)
        offsets = np.stack([np.asarray(feature["offsets"], dtype=np.int64) for feature in features])
    else:
        example_index = np.zeros((0,), dtype=np.int64)
        offsets = np.zeros(tuple(logits_shape) + (2,), dtype=np.int64)
    if len(logits_shape) != 2 or offsets.shape != tuple(logits_shape) + (2,) or example_index.shape != logits_shape[:1]:
        raise ValueError(f"offsets {offsets.shape} and example_index {example_index.shape} do not match "
                         f"logits {tuple(logits_shape)}; expected [N, L, 2] and [N]")
    return example_index, offsets


def _window_candidates(offsets, start_logits, end_logits, n_best_size, max_answer_length):
    """All valid (window, start, end) spans from the top-k starts × top-k ends of each window.

    Args:
        offsets: int [N, L, 2]; start_logits, end_logits: float [N, L].

    Returns:
        dict of 1-D arrays of equal length M: window, start_char, end_char, score.
    """
    is_context = offsets[..., 0] >= 0
    k = min(n_best_size, start_logits.shape[1])
    top_starts = np.argsort(-np.where(is_context, start_logits, -np.inf), axis=1, kind="stable")[:, :k]
    top_ends = np.argsort(-np.where(is_context, end_logits, -np.inf), axis=1, kind="stable")[:, :k]
    rows = np.arange(start_logits.shape[0])[:, None, None]
    starts = top_starts[:, :, None]
    ends = top_ends[:, None, :]
    length = ends - starts + 1
    valid = is_context[rows, starts] & is_context[rows, ends] & (length >= 1) & (length <= max_answer_length)
    window, start_rank, end_rank = np.nonzero(valid)
    start_token = top_starts[window, start_rank]
    end_token = top_ends[window, end_rank]
    return {
        "window": window,
        "start_char": offsets[window, start_token, 0],
        "end_char": offsets[window, end_token, 1],
        "score": start_logits[window, start_token] + end_logits[window, end_token],
    }


def _group_by_example(spans, example_index, num_examples):
    """Splits span arrays per example, each sorted by descending score.

    Returns:
        list (one per example) of (start_char [m], end_char [m], score [m]) arrays.
    """
    owner = example_index[spans["window"]]
    order = np.lexsort((-spans["score"], owner))
    bounds = np.searchsorted(owner[order], np.arange(num_examples + 1))
    groups = []
    for index in range(num_examples):
        picked = order[bounds[index]:bounds[index + 1]]
        groups.append((spans["start_char"][picked], spans["end_char"][picked], spans["score"][picked]))
    return groups


def _nbest(context, spans, n_best_size):
    """The best `n_best_size` distinct character spans of one example, as dicts, best first."""
    best, seen = [], set()
    for start_char, end_char, score in zip(*spans):
        key = (int(start_char), int(end_char))
        if key in seen:
            continue
        seen.add(key)
        best.append({"text": context[key[0]:key[1]], "start_char": key[0], "end_char": key[1], "score": float(score)})
        if len(best) == n_best_size:
            break
    return best


def _choose(best, null_score, null_score_diff_threshold):
    """(prediction text, no-answer probability) from an n-best list and the null score."""
    if not best:
        return "", 1.0
    scores = np.array([candidate["score"] for candidate in best])
    top = max(null_score, scores.max())
    null_weight = np.exp(null_score - top)
    na_prob = float(null_weight / (null_weight + np.exp(scores - top).sum()))
    if null_score - best[0]["score"] > null_score_diff_threshold:
        return "", na_prob
    return best[0]["text"], na_prob
