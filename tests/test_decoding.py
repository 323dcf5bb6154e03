"""The one answer decoder (`decode_answers`): hand-built windows, thresholds, n-best, a brute-force check."""

import re

import numpy as np
import pytest
import tensorflow as tf

from road_tf.evaluation.answerer import VERY_NEGATIVE, decode_answers

QUESTION_TOKENS = 3
SEQ_LEN = 16
CONTEXT = "Rollo led the Normans from Denmark to the north of France in 911 ."
WORDS = [match.span() for match in re.finditer(r"\S+", CONTEXT)]


def _window(first, last, seq_len=SEQ_LEN, words=WORDS):
    """Byte offsets [S, 2] of one window over context words [first, last): [CLS] q q q [SEP] words [SEP] pad.

    Returns (offsets, {word index: position in the window}).
    """
    offsets = np.full((seq_len, 2), -1, dtype=np.int32)
    positions = {}
    for position, word in enumerate(range(first, last), start=QUESTION_TOKENS + 2):
        offsets[position] = words[word]
        positions[word] = position
    return offsets, positions


def _logits(seq_len=SEQ_LEN, base=-8.0, null=(0.0, 0.0)):
    """(start, end) logit rows filled with `base`, with the [CLS] (null) logits set."""
    start, end = np.full(seq_len, base, np.float32), np.full(seq_len, base, np.float32)
    start[0], end[0] = null
    return start, end


def _decode(starts, ends, offsets, example_index, contexts, n_best_size=20, max_answer_length=30, threshold=0.0):
    """decode_answers on NumPy inputs -> dict of NumPy outputs (strings decoded)."""
    out = decode_answers(tf.constant(np.stack(starts)), tf.constant(np.stack(ends)), tf.constant(np.stack(offsets)),
                         tf.constant(example_index, tf.int32), tf.constant(contexts), n_best_size, max_answer_length,
                         threshold)
    out = {key: value.numpy() for key, value in out.items()}
    for key in ("answer", "best_text", "nbest_text"):
        out[key] = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(out[key])
    return out


def _text(first_word, last_word):
    return CONTEXT[WORDS[first_word][0]:WORDS[last_word][1]]


def test_best_span_is_found_in_the_window_that_holds_it_whole():
    # Window A covers words 0-6, window B words 4-10; the best span, words 5-8, ends outside A.
    offsets_a, pos_a = _window(0, 7)
    offsets_b, pos_b = _window(4, 11)
    start_a, end_a = _logits(null=(1.0, 1.0))
    start_b, end_b = _logits(null=(1.0, 1.0))
    start_a[pos_a[5]], end_a[pos_a[6]] = 3.0, 2.0
    start_b[pos_b[5]], end_b[pos_b[8]] = 4.0, 3.5
    out = _decode([start_a, start_b], [end_a, end_b], [offsets_a, offsets_b], [0, 0], [CONTEXT])
    assert out["answer"][0] == _text(5, 8)
    assert (out["start_char"][0], out["end_char"][0]) == (WORDS[5][0], WORDS[8][1])
    assert out["score"][0] == pytest.approx(7.5)
    assert out["nbest_text"][0][0] == _text(5, 8) and out["nbest_score"][0][0] == pytest.approx(7.5)


@pytest.mark.parametrize("threshold, expected", [(0.0, ""), (2.0, "Normans")])
def test_null_wins_or_loses_against_the_threshold(threshold, expected):
    offsets, pos = _window(0, 11)
    start, end = _logits(null=(3.0, 3.0))
    start[pos[3]], end[pos[3]] = 2.5, 2.0  # span "Normans" scores 4.5 < null 6.0
    out = _decode([start], [end], [offsets], [0], [CONTEXT], threshold=threshold)
    assert out["answer"][0] == expected
    assert out["best_text"][0] == "Normans", "the best span is reported whatever the threshold"
    assert out["null_score"][0] == pytest.approx(6.0)
    assert (out["start_char"][0] >= 0) == bool(expected)


def test_no_answer_probability_is_sigmoid_of_null_minus_best():
    offsets, pos = _window(0, 11)
    start, end = _logits(null=(0.5, 0.25))
    start[pos[2]], end[pos[4]] = 1.0, 0.5
    out = _decode([start], [end], [offsets], [0], [CONTEXT])
    diff = 0.75 - 1.5
    assert out["no_answer_probability"][0] == pytest.approx(1 / (1 + np.exp(-diff)), rel=1e-6)
    assert out["null_score"][0] - out["score"][0] == pytest.approx(diff)


def test_start_after_end_and_overlong_spans_are_rejected():
    offsets, pos = _window(0, 11)
    start, end = _logits()
    start[pos[6]], end[pos[2]] = 9.0, 9.0  # end before start
    start[pos[0]], end[pos[10]] = 8.0, 8.0  # 11 tokens long
    out = _decode([start], [end], [offsets], [0], [CONTEXT], max_answer_length=4, threshold=1e9)
    got = set(zip(out["nbest_start_char"][0], out["nbest_end_char"][0]))
    assert (WORDS[6][0], WORDS[2][1]) not in got and (WORDS[0][0], WORDS[10][1]) not in got
    lengths = [len(text.split()) for text in out["nbest_text"][0] if text]
    assert lengths and max(lengths) <= 4


def test_non_context_positions_are_never_chosen():
    offsets, pos = _window(0, 5)
    start, end = _logits()
    start[1], end[2] = 50.0, 50.0  # question tokens
    start[-1], end[-1] = 40.0, 40.0  # padding
    out = _decode([start], [end], [offsets], [0], [CONTEXT], threshold=1e9)
    assert out["answer"][0] and out["answer"][0] in CONTEXT
    assert out["score"][0] < 0


def test_same_span_from_overlapping_windows_is_listed_once_with_its_best_score():
    offsets_a, pos_a = _window(0, 7)
    offsets_b, pos_b = _window(2, 9)
    start_a, end_a = _logits()
    start_b, end_b = _logits()
    start_a[pos_a[3]], end_a[pos_a[4]] = 2.0, 2.0
    start_b[pos_b[3]], end_b[pos_b[4]] = 3.0, 2.5
    out = _decode([start_a, start_b], [end_a, end_b], [offsets_a, offsets_b], [0, 0], [CONTEXT], threshold=1e9)
    spans = [(a, b) for a, b, s in zip(out["nbest_start_char"][0], out["nbest_end_char"][0], out["nbest_score"][0])
             if s > VERY_NEGATIVE / 2]
    assert len(spans) == len(set(spans)), "each character span appears once"
    assert out["nbest_text"][0][0] == _text(3, 4) and out["nbest_score"][0][0] == pytest.approx(5.5)


def test_spans_of_equal_score_are_ranked_by_start_then_end():
    """Scoring only the band of spans up to max_answer_length keeps the order of all pairs on ties."""
    offsets, _ = _window(0, 6)
    start, end = _logits(base=0.0, null=(-9.0, -9.0))
    out = _decode([start], [end], [offsets], [0], [CONTEXT], n_best_size=5, max_answer_length=3)
    assert list(out["nbest_text"][0]) == [_text(0, 0), _text(0, 1), _text(0, 2), _text(1, 1), _text(1, 2)]


def test_question_without_valid_spans_predicts_no_answer_with_certainty():
    offsets = np.full((SEQ_LEN, 2), -1, np.int32)  # an empty context: no context tokens at all
    start, end = _logits(null=(-3.0, -3.0))
    out = _decode([start], [end], [offsets], [0], [""], threshold=1e9)
    assert out["answer"][0] == "" and out["no_answer_probability"][0] == 1.0
    assert out["score"][0] == pytest.approx(-6.0) and (out["nbest_score"][0] <= VERY_NEGATIVE / 2).all()


def test_character_offsets_count_code_points_of_utf8_contexts():
    context = "Café Zürich — 1815 Straße"
    words = [match.span() for match in re.finditer(r"\S+", context)]
    byte_words = [(len(context[:a].encode()), len(context[:b].encode())) for a, b in words]
    offsets, pos = _window(0, len(words), words=byte_words)
    start, end = _logits()
    start[pos[1]], end[pos[3]] = 5.0, 5.0
    out = _decode([start], [end], [offsets], [0], [context])
    a, b = int(out["start_char"][0]), int(out["end_char"][0])
    assert out["answer"][0] == "Zürich — 1815" == context[a:b]


def _brute_force(contexts, example_index, offsets, start_logits, end_logits, n_best_size, max_answer_length):
    """Per question: sorted distinct (score, (start byte, end byte)) from explicit loops over every pair."""
    found = [dict() for _ in contexts]
    for window in range(len(example_index)):
        positions = [i for i in range(offsets.shape[1]) if offsets[window, i, 0] >= 0]
        spans = found[example_index[window]]
        for s in positions:
            for e in positions:
                if s <= e < s + max_answer_length:
                    key = (int(offsets[window, s, 0]), int(offsets[window, e, 1]))
                    spans[key] = max(spans.get(key, -np.inf), start_logits[window, s] + end_logits[window, e])
    return [sorted(((score, key) for key, score in spans.items()), reverse=True)[:n_best_size] for spans in found]


VOCAB = ["a", "Rhine", "flows", "north,", "cafe", "1815", "(see", "Basel)", "to", "the", "sea."]


def test_matches_brute_force_on_random_windows():
    rng = np.random.default_rng(0)
    seq_len, window_words = 40, 30
    contexts, example_index, offsets = [], [], []
    for index in range(40):
        context = " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), window_words * 2))
        spans = [match.span() for match in re.finditer(r"\S+", context)]
        contexts.append(context)
        for window in range(int(rng.integers(1, 4))):
            first = window * window_words // 2
            offsets.append(_window(first, min(first + window_words, len(spans)), seq_len, spans)[0])
            example_index.append(index)
    offsets = np.stack(offsets)
    start_logits = rng.normal(size=(len(offsets), seq_len)).astype(np.float32)
    end_logits = rng.normal(size=(len(offsets), seq_len)).astype(np.float32)
    start_logits[:, 0] += 2.0  # make the null answer competitive
    end_logits[:, 0] += 2.0
    out = _decode(start_logits, end_logits, offsets, example_index, contexts, n_best_size=5, max_answer_length=6,
                  threshold=0.3)
    expected = _brute_force(contexts, example_index, offsets, start_logits.astype(np.float64),
                            end_logits.astype(np.float64), 5, 6)
    null = np.full(len(contexts), np.inf)
    np.minimum.at(null, example_index, start_logits[:, 0].astype(np.float64) + end_logits[:, 0])
    empty = 0
    for q, context in enumerate(contexts):
        got = list(zip(out["nbest_start_char"][q], out["nbest_end_char"][q]))
        assert got == [key for _, key in expected[q]], q  # ASCII: characters are bytes
        np.testing.assert_allclose(out["nbest_score"][q], [score for score, _ in expected[q]], rtol=1e-5)
        assert list(out["nbest_text"][q]) == [context[a:b] for _, (a, b) in expected[q]]
        best_score, (a, b) = expected[q][0]
        wanted = "" if null[q] - best_score > 0.3 else context[a:b]
        assert out["answer"][q] == wanted
        empty += wanted == ""
    assert 0 < empty < len(contexts)
