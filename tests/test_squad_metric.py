"""The SQuAD 2.0 metric: hand-computed cases, and agreement with a second, independent implementation.

The second implementation (`_reference_metrics`) follows the official evaluate-v2.0.py rules but
is written differently on purpose: no regex, no Counter, explicit loops everywhere.
"""

import collections
import logging
import pathlib
import random
import string

import pytest

from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import read_squad_json
from road_tf.evaluation.squad_metric import normalize_answer, squad_v2_metrics, token_f1

SQUAD_DEV = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad2-dev" / "squad2-dev-public.json.gz"


# ---- the independent reference implementation ----

def _ref_normalize(text):
    kept = []
    for char in text.lower():
        if string.punctuation.find(char) < 0:
            kept.append(char)
    words_and_gaps, current, current_is_word = [], "", None
    for char in kept:
        is_word = char.isalnum() or char == "_"
        if current and is_word != current_is_word:
            words_and_gaps.append((current, current_is_word))
            current = ""
        current += char
        current_is_word = is_word
    if current:
        words_and_gaps.append((current, current_is_word))
    rebuilt = ""
    for piece, is_word in words_and_gaps:
        rebuilt += " " if is_word and piece in ("a", "an", "the") else piece
    tokens, token = [], ""
    for char in rebuilt:
        if char.isspace():
            if token:
                tokens.append(token)
            token = ""
        else:
            token += char
    if token:
        tokens.append(token)
    return tokens


def _ref_f1(gold, pred):
    gold_tokens = _ref_normalize(gold)
    pred_tokens = _ref_normalize(pred)
    if len(gold_tokens) == 0 or len(pred_tokens) == 0:
        return 1.0 if gold_tokens == pred_tokens else 0.0
    unused = list(gold_tokens)
    matched = 0
    for token in pred_tokens:
        for position in range(len(unused)):
            if unused[position] == token:
                del unused[position]
                matched += 1
                break
    if matched == 0:
        return 0.0
    precision = matched / len(pred_tokens)
    recall = matched / len(gold_tokens)
    return 2.0 * precision * recall / (precision + recall)


def _ref_metrics(examples, preds, na_probs, thresh):
    qids, has_ans, raw_em, raw_f1 = [], [], [], []
    for example in examples:
        if example.qid not in preds:
            continue
        golds = []
        for answer in example.answers:
            if len(_ref_normalize(answer.text)) > 0:
                golds.append(answer.text)
        if len(golds) == 0:
            golds = [""]
        best_em, best_f1 = 0.0, 0.0
        for gold in golds:
            if _ref_normalize(gold) == _ref_normalize(preds[example.qid]):
                best_em = 1.0
            best_f1 = max(best_f1, _ref_f1(gold, preds[example.qid]))
        qids.append(example.qid)
        has_ans.append(len(example.answers) > 0)
        raw_em.append(best_em)
        raw_f1.append(best_f1)
    probs = na_probs if na_probs is not None else dict.fromkeys(preds, 0.0)
    em, f1 = [], []
    for i in range(len(qids)):
        if probs[qids[i]] > thresh:
            em.append(0.0 if has_ans[i] else 1.0)
            f1.append(0.0 if has_ans[i] else 1.0)
        else:
            em.append(raw_em[i])
            f1.append(raw_f1[i])
    out = {}
    for prefix, keep in (("", None), ("HasAns_", True), ("NoAns_", False)):
        picked = [i for i in range(len(qids)) if keep is None or has_ans[i] == keep]
        if picked:
            out[prefix + "exact"] = 100.0 * sum(em[i] for i in picked) / len(picked)
            out[prefix + "f1"] = 100.0 * sum(f1[i] for i in picked) / len(picked)
            out[prefix + "total"] = len(picked)
    if na_probs is not None:
        for name, raw in (("exact", raw_em), ("f1", raw_f1)):
            position = {qid: i for i, qid in enumerate(qids)}
            order = sorted((value, index, qid) for index, (qid, value) in enumerate(na_probs.items()))
            score = float(sum(1 for flag in has_ans if not flag))
            best, best_at = score, 0.0
            for value, _, qid in order:
                if qid not in position:
                    continue
                i = position[qid]
                if has_ans[i]:
                    score += raw[i]
                elif preds[qid] != "":
                    score -= 1.0
                if score > best:
                    best, best_at = score, value
            out["best_" + name] = 100.0 * best / len(qids)
            out["best_" + name + "_thresh"] = best_at
    return out


# ---- random predictions over the real public half ----

def _perturb(text, rng, context_words):
    choice = rng.randrange(9)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return rng.choice(["The ", "an ", "A ", "the the "]) + text
    if choice == 2:
        return text + rng.choice([".", ",", "!", "'s", " .", "—", "’"])
    if choice == 3:
        return "  \t".join(text.split()) + "\n"
    if choice == 4:
        words = text.split()
        return " ".join(words[1:] if rng.random() < 0.5 else words[:-1])
    if choice == 5:
        return text + " " + rng.choice(context_words)
    if choice == 6:
        return "".join(c for c in text if c not in ",.-")
    if choice == 7:
        return text.replace(" ", "_")
    return "(" + text.lower() + ")"


JUNK = ["a an the", "...", " ", "_", "the_cat", "théâtre a", "A", "ÉTÉ à l'été", "42", "an-the", "the.", "\u00a0the\u00a0"]


def _random_predictions(examples, rng, missing_rate):
    preds = {}
    for example in examples:
        words = example.context.split()
        draw = rng.random()
        if draw < missing_rate:
            continue
        if draw < 0.25 and example.answers:
            preds[example.qid] = rng.choice(example.answers).text
        elif draw < 0.45:
            source = rng.choice(example.answers).text if example.answers else rng.choice(words)
            preds[example.qid] = _perturb(source, rng, words)
        elif draw < 0.7:
            start = rng.randrange(len(example.context))
            preds[example.qid] = example.context[start:start + rng.randint(1, 60)]
        elif draw < 0.85:
            preds[example.qid] = ""
        else:
            preds[example.qid] = rng.choice(JUNK)
    preds["not-a-question-of-the-data"] = "ignored"
    return preds


def _random_na_probs(preds, rng, rounded):
    """Shuffled-order probabilities, lower for non-empty predictions, with many exact ties.

    rounded: ties everywhere (half the values rounded to 0.1); else 40% drawn from a few values.
    """
    qids = list(preds)
    rng.shuffle(qids)
    probs = {}
    for qid in qids:
        prob = rng.random() * 0.6 + (0.4 if preds[qid] == "" else 0.0)
        if rounded:
            probs[qid] = round(prob, 1) if rng.random() < 0.5 else prob
        else:
            probs[qid] = rng.choice([0.1, 0.25, 0.5, 0.75, 1, 1.0]) if rng.random() < 0.4 else prob
    probs["only-in-na-probs"] = 0.3
    return probs


@pytest.fixture(scope="module")
def public_dev():
    if not SQUAD_DEV.exists():
        pytest.skip(f"public SQuAD 2.0 dev half not found at {SQUAD_DEV} (shared/ data is absent)")
    return read_squad_json(SQUAD_DEV)


def _assert_same(actual, expected):
    assert list(actual) == list(expected)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=1e-9), key


@pytest.mark.parametrize("seed, missing_rate, na_probs_kind, thresh", [
    (0, 0.0, None, 1.0),
    (1, 0.0, "smooth", 1.0),
    (2, 0.0, "rounded", 1.0),
    (3, 0.0, "smooth", 0.5),
    (4, 0.0, "rounded", 0.3),
    (5, 0.1, None, 1.0),
    (6, 0.1, "rounded", 0.5),
])
def test_library_matches_independent_implementation_on_public_half(public_dev, seed, missing_rate, na_probs_kind, thresh):
    rng = random.Random(seed)
    preds = _random_predictions(public_dev, rng, missing_rate)
    assert len(preds) > 5000
    na_probs = _random_na_probs(preds, rng, na_probs_kind == "rounded") if na_probs_kind else None
    expected = _ref_metrics(public_dev, preds, na_probs, thresh)
    actual = squad_v2_metrics(public_dev, preds, na_probs, na_prob_thresh=thresh)
    _assert_same(actual, expected)
    assert 5 < actual["exact"] < 95 and actual["exact"] <= actual["f1"]
    assert actual["total"] == sum(1 for example in public_dev if example.qid in preds)


def test_normalization_and_token_f1_agree_on_random_context_windows(public_dev):
    rng = random.Random(7)
    golds = [answer.text for example in public_dev for answer in example.answers]
    checked = 0
    for example in public_dev[::3]:
        start = rng.randrange(len(example.context))
        pred = example.context[start:start + rng.randint(0, 80)]
        gold = rng.choice(golds)
        assert normalize_answer(pred).split() == _ref_normalize(pred)
        assert f1_score(gold, pred) == pytest.approx(_ref_f1(gold, pred), abs=1e-12)
        checked += 1
    assert checked > 2000


@pytest.mark.parametrize("text, normalized", [
    ("The  Cat, sat!", "cat sat"),
    ("an apple a day", "apple day"),
    ("theatre", "theatre"),
    ("a-b", "ab"),
    ("the_cat", "thecat"),
    ("A.B.", "ab"),
    ("Café — the ‘best’", "café — ‘best’"),
    ("\tthe\nend ", "end"),
    ("", ""),
])
def test_normalize_answer_by_hand(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize("gold, pred, f1", [
    ("the cat sat", "cat sat on", 0.8),
    ("cat cat dog", "cat dog dog", 2 / 3),
    ("Denver Broncos", "the broncos", 2 / 3),
    ("", "", 1),
    ("the", "", 1),
    ("", "a", 1),
    ("cat", "", 0),
    ("", "cat", 0),
    ("cat", "dog", 0),
])
def test_f1_by_hand(gold, pred, f1):
    assert f1_score(gold, pred) == pytest.approx(f1)


def f1_score(gold, prediction):
    """The official script's compute_f1 through road_tf's normalization and token F1."""
    return token_f1(normalize_answer(gold).split(), collections.Counter(normalize_answer(prediction).split()))


SMALL = [
    QAExample("q1", "Where?", "In France.", (Answer("France", 3), Answer("In France", 0))),
    QAExample("q2", "Who?", "Rollo led."),
    QAExample("q3", "Who led?", "Rollo led.", (Answer("Rollo", 0),)),
]
SMALL_PREDS = {"q1": "france.", "q2": "Rollo", "q3": "Rollo led"}


def test_small_set_by_hand():
    result = squad_v2_metrics(SMALL, SMALL_PREDS)
    assert result == pytest.approx({
        "exact": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3, "total": 3,
        "HasAns_exact": 50.0, "HasAns_f1": 100 * (1 + 2 / 3) / 2, "HasAns_total": 2,
        "NoAns_exact": 0.0, "NoAns_f1": 0.0, "NoAns_total": 1,
    })


def test_small_set_with_na_probs_by_hand():
    result = squad_v2_metrics(SMALL, SMALL_PREDS, {"q1": 0.2, "q2": 0.9, "q3": 0.6}, na_prob_thresh=0.5)
    assert result["exact"] == pytest.approx(200 / 3)
    assert result["f1"] == pytest.approx(200 / 3)
    assert result["NoAns_exact"] == 100.0 and result["HasAns_exact"] == 50.0
    assert (result["best_exact"], result["best_exact_thresh"]) == (pytest.approx(200 / 3), 0.2)
    assert (result["best_f1"], result["best_f1_thresh"]) == (pytest.approx(800 / 9), 0.6)


def test_unanswerable_only_subset_has_no_hasans_keys():
    result = squad_v2_metrics(SMALL[1:2], {"q2": ""})
    assert result == {"exact": 100.0, "f1": 100.0, "total": 1, "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1}


def test_missing_predictions_are_logged_and_left_out(caplog):
    with caplog.at_level(logging.WARNING, logger="road_tf.evaluation.squad_metric"):
        result = squad_v2_metrics(SMALL, {"q1": "France"})
    assert "Missing prediction for q2" in caplog.text and "Missing prediction for q3" in caplog.text
    assert (result["total"], result["exact"], result["HasAns_total"]) == (1, 100.0, 1)
    assert "NoAns_total" not in result


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="no question"):
        squad_v2_metrics(SMALL, {"other": "x"})
    with pytest.raises(ValueError, match="na_probs has no value"):
        squad_v2_metrics(SMALL, SMALL_PREDS, {"q1": 0.5})
    with pytest.raises(ValueError, match="duplicate"):
        squad_v2_metrics(SMALL + SMALL[:1], SMALL_PREDS)
