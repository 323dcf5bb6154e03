"""N-best span decoding: hand-built windows, thresholds, rejected spans, and a brute-force check."""

import re
import time

import numpy as np
import pytest

from road_tf.data.examples import QAExample
from road_tf.evaluation.decoding import decode_spans

QUESTION_TOKENS = 3
SEQ_LEN = 16
CONTEXT = "Rollo led the Normans from Denmark to the north of France in 911 ."
WORDS = [match.span() for match in re.finditer(r"\S+", CONTEXT)]


def _window(example_index, first, last, seq_len=SEQ_LEN, words=WORDS):
    """One feature over context words [first, last): [CLS] q q q [SEP] words [SEP] pad.

    Returns (feature dict, {word index: position in the window}).
    """
    offsets = np.full((seq_len, 2), -1, dtype=np.int64)
    positions = {}
    for position, word in enumerate(range(first, last), start=QUESTION_TOKENS + 2):
        offsets[position] = words[word]
        positions[word] = position
    return {"example_index": example_index, "offsets": offsets}, positions


def _logits(seq_len=SEQ_LEN, base=-8.0, null=(0.0, 0.0)):
    """(start, end) logit rows filled with `base`, with the [CLS] (null) logits set."""
    start, end = np.full(seq_len, base), np.full(seq_len, base)
    start[0], end[0] = null
    return start, end


def _text(first_word, last_word):
    return CONTEXT[WORDS[first_word][0]:WORDS[last_word][1]]


EXAMPLE = QAExample("q", "Where did Rollo go?", CONTEXT)


def test_best_span_is_found_in_the_window_that_holds_it_whole():
    # Window A covers words 0-6, window B words 4-10; the best span, words 5-8, ends outside A.
    feature_a, pos_a = _window(0, 0, 7)
    feature_b, pos_b = _window(0, 4, 11)
    start_a, end_a = _logits(null=(1.0, 1.0))
    start_b, end_b = _logits(null=(1.0, 1.0))
    start_a[pos_a[5]], end_a[pos_a[6]] = 4.0, 1.0
    start_b[pos_b[5]], end_b[pos_b[8]] = 4.0, 3.0
    predictions, na_probs, nbest = decode_spans([EXAMPLE], [feature_a, feature_b], [start_a, start_b], [end_a, end_b])
    assert predictions["q"] == _text(5, 8) == "Denmark to the north"
    assert nbest["q"][0] == {"text": "Denmark to the north", "start_char": WORDS[5][0], "end_char": WORDS[8][1], "score": 7.0}
    assert nbest["q"][1]["text"] == _text(5, 6) and nbest["q"][1]["score"] == 5.0
    assert 0.0 < na_probs["q"] < 0.01


@pytest.mark.parametrize("threshold, expected", [(0.0, ""), (0.99, ""), (1.0, "Rollo"), (2.0, "Rollo"), (-5.0, "")])
def test_null_wins_or_loses_against_the_threshold(threshold, expected):
    # Null = min over windows = 2 + 3 = 5; best span = 1.5 + 2.5 = 4; null - best = 1.
    feature_a, pos_a = _window(0, 0, 7)
    feature_b, _ = _window(0, 4, 11)
    start_a, end_a = _logits(null=(2.0, 3.0))
    start_b, end_b = _logits(null=(6.0, 6.0))
    start_a[pos_a[0]], end_a[pos_a[0]] = 1.5, 2.5
    predictions, _, _ = decode_spans([EXAMPLE], [feature_a, feature_b], [start_a, start_b], [end_a, end_b],
                                     null_score_diff_threshold=threshold)
    assert predictions["q"] == expected


def test_na_prob_is_softmax_of_null_against_the_nbest_scores():
    feature, pos = _window(0, 0, 3)
    start, end = _logits(base=-1e9, null=(0.5, 0.5))
    start[pos[0]], start[pos[1]] = 1.0, 0.0
    end[pos[1]], end[pos[2]] = 1.0, 0.0
    _, na_probs, nbest = decode_spans([EXAMPLE], [feature], [start], [end])
    # Spans (0,1)=2, (0,2)=1, (1,1)=1, (1,2)=0, and two near -1e9; null = 1.
    assert [entry["score"] for entry in nbest["q"]][:4] == [2.0, 1.0, 1.0, 0.0]
    assert len(nbest["q"]) == 6
    assert na_probs["q"] == pytest.approx(np.e / (np.e + np.exp(2.0) + 2 * np.e + 1.0), rel=1e-12)


def test_start_after_end_and_overlong_spans_are_rejected():
    feature, pos = _window(0, 0, 11)
    start, end = _logits(null=(-20.0, -20.0))
    start[pos[6]], end[pos[2]] = 9.0, 9.0  # best start lies after best end
    start[pos[1]], end[pos[8]] = 4.0, 5.0  # 8 tokens long
    start[pos[3]], end[pos[4]] = 1.0, 1.0
    predictions, _, nbest = decode_spans([EXAMPLE], [feature], [start], [end], max_answer_length=4)
    texts = [entry["text"] for entry in nbest["q"]]
    assert predictions["q"] == _text(6, 8)  # 3 tokens, score 14; (6, 2) = 18 and (1, 8) = 9 are invalid
    assert nbest["q"][1]["text"] == _text(1, 2) and nbest["q"][1]["score"] == 13.0
    for entry in nbest["q"]:
        first = next(i for i, span in enumerate(WORDS) if span[0] == entry["start_char"])
        last = next(i for i, span in enumerate(WORDS) if span[1] == entry["end_char"])
        assert 0 <= last - first < 4
    assert _text(1, 8) not in texts
    assert all(entry["start_char"] < entry["end_char"] for entry in nbest["q"])


def test_non_context_positions_are_never_chosen():
    feature, pos = _window(0, 2, 6)
    start, end = _logits(base=50.0, null=(-30.0, -30.0))
    for position in pos.values():
        start[position], end[position] = -1.0, -1.0
    start[pos[3]], end[pos[4]] = 0.0, 0.0
    predictions, na_probs, nbest = decode_spans([EXAMPLE], [feature], [start], [end])
    assert predictions["q"] == _text(3, 4)
    assert all(entry["score"] <= 0.0 for entry in nbest["q"])
    assert na_probs["q"] < 1e-10


def test_same_span_from_overlapping_windows_is_listed_once_with_its_best_score():
    feature_a, pos_a = _window(0, 0, 7)
    feature_b, pos_b = _window(0, 3, 10)
    start_a, end_a = _logits(null=(-9.0, -9.0))
    start_b, end_b = _logits(null=(-9.0, -9.0))
    start_a[pos_a[4]], end_a[pos_a[5]] = 1.0, 1.0
    start_b[pos_b[4]], end_b[pos_b[5]] = 2.0, 2.0
    _, _, nbest = decode_spans([EXAMPLE], [feature_a, feature_b], [start_a, start_b], [end_a, end_b], n_best_size=5)
    keys = [(entry["start_char"], entry["end_char"]) for entry in nbest["q"]]
    assert len(keys) == len(set(keys)) == 5
    assert nbest["q"][0]["score"] == 4.0 and nbest["q"][0]["text"] == _text(4, 5)
    assert [entry["score"] for entry in nbest["q"]] == sorted((entry["score"] for entry in nbest["q"]), reverse=True)


def test_question_without_windows_or_valid_spans_predicts_no_answer():
    other = QAExample("other", "?", CONTEXT)
    feature, _ = _window(1, 0, 0)  # no context token at all
    start, end = _logits()
    predictions, na_probs, nbest = decode_spans([EXAMPLE, other], [feature], [start], [end])
    assert predictions == {"q": "", "other": ""}
    assert na_probs == {"q": 1.0, "other": 1.0}
    assert nbest == {"q": [], "other": []}


def test_bad_shapes_raise():
    feature, _ = _window(0, 0, 5)
    start, end = _logits()
    with pytest.raises(ValueError, match="do not match"):
        decode_spans([EXAMPLE], [feature], [start[:-1]], [end[:-1]])
    with pytest.raises(ValueError, match="example_index"):
        decode_spans([EXAMPLE], [dict(feature, example_index=3)], [start], [end])


def _brute_force(examples, example_index, offsets, start_logits, end_logits, n_best_size, max_answer_length):
    """Per question: sorted distinct (score, start_char, end_char) from explicit loops."""
    found = {example.qid: {} for example in examples}
    for window in range(len(example_index)):
        context_positions = [i for i in range(offsets.shape[1]) if offsets[window, i, 0] >= 0]
        by_start = sorted(context_positions, key=lambda i: -start_logits[window, i])[:n_best_size]
        by_end = sorted(context_positions, key=lambda i: -end_logits[window, i])[:n_best_size]
        spans = found[examples[example_index[window]].qid]
        for s in by_start:
            for e in by_end:
                if s <= e < s + max_answer_length:
                    key = (int(offsets[window, s, 0]), int(offsets[window, e, 1]))
                    spans[key] = max(spans.get(key, -np.inf), start_logits[window, s] + end_logits[window, e])
    return {qid: sorted(((score, key) for key, score in spans.items()), reverse=True)[:n_best_size]
            for qid, spans in found.items()}


VOCAB = ["a", "Rhine", "flows", "north,", "café", "1815", "(see", "Basel)", "to", "the", "sea."]


def _random_batch(rng, num_examples, windows_per_example, seq_len, window_words):
    """Random contexts cut into overlapping windows with random logits, as dict-of-arrays features."""
    examples, example_index, offsets = [], [], []
    for index in range(num_examples):
        context = " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), window_words * 2))
        spans = [match.span() for match in re.finditer(r"\S+", context)]
        examples.append(QAExample(f"q{index}", "?", context))
        for window in range(windows_per_example):
            first = window * window_words // 2
            feature, _ = _window(index, first, min(first + window_words, len(spans)), seq_len, spans)
            example_index.append(index)
            offsets.append(feature["offsets"])
    shape = (len(example_index), seq_len)
    features = {"example_index": np.array(example_index), "offsets": np.stack(offsets)}
    return examples, features, rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


def test_matches_brute_force_on_random_windows():
    rng = np.random.default_rng(0)
    examples, features, start_logits, end_logits = _random_batch(rng, 60, 3, 40, 30)
    start_logits[:, 0] += 2.0  # make the null answer competitive
    end_logits[:, 0] += 2.0
    predictions, na_probs, nbest = decode_spans(examples, features, start_logits, end_logits,
                                                n_best_size=5, max_answer_length=6, null_score_diff_threshold=0.3)
    expected = _brute_force(examples, features["example_index"], features["offsets"],
                            start_logits.astype(np.float64), end_logits.astype(np.float64), 5, 6)
    for example in examples:
        got = [(entry["start_char"], entry["end_char"], entry["text"]) for entry in nbest[example.qid]]
        assert got == [(a, b, example.context[a:b]) for _, (a, b) in expected[example.qid]]
        assert [entry["score"] for entry in nbest[example.qid]] == pytest.approx([score for score, _ in expected[example.qid]])
    null = {}
    for window, index in enumerate(features["example_index"]):
        score = float(start_logits[window, 0]) + float(end_logits[window, 0])
        null[examples[index].qid] = min(null.get(examples[index].qid, np.inf), score)
    empty = 0
    for example in examples:
        best_score, (a, b) = expected[example.qid][0]
        wanted = "" if null[example.qid] - best_score > 0.3 else example.context[a:b]
        assert predictions[example.qid] == wanted
        assert wanted == "" or wanted in example.context
        assert 0.0 < na_probs[example.qid] < 1.0
        empty += wanted == ""
    assert 0 < empty < len(examples)


def test_list_and_array_features_agree_and_thousands_of_windows_are_fast():
    rng = np.random.default_rng(1)
    examples, features, start_logits, end_logits = _random_batch(rng, 1500, 2, 384, 180)
    began = time.perf_counter()
    result = decode_spans(examples, features, start_logits, end_logits)
    elapsed = time.perf_counter() - began
    as_list = [{"example_index": int(i), "offsets": o} for i, o in zip(features["example_index"], features["offsets"])]
    assert decode_spans(examples[:50], as_list[:100], start_logits[:100], end_logits[:100])[0] == \
        {example.qid: result[0][example.qid] for example in examples[:50]}
    assert elapsed < 20.0, f"3000 windows of 384 took {elapsed:.1f} s"
