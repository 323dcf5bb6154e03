"""The tuned no-answer threshold, the held-out tuned F1 (a threshold tuned on some articles, scored on the
others), and the two diagnostics beside them: best-span F1 and no-answer AUC."""

import numpy as np
import pytest

from road_tf.data.examples import Answer, QAExample
from road_tf.evaluation.answerer import VERY_NEGATIVE
from road_tf.evaluation.qa_eval import (article_fold, best_span_f1, held_out_tuned_f1, no_answer_auc,
                                        tuned_null_threshold)
from road_tf.evaluation.squad_metric import squad_v2_metrics


def titled(fold):
    """A title whose article lands in `fold` of 2."""
    return next(title for title in (f"article {i}" for i in range(100))
                if article_fold(QAExample("q", "q", "c", title=title), 2) == fold)


def question(qid, title, gold, best, margin):
    """(QAExample, its best span's text, its null - best span score)."""
    answers = (Answer(gold, 0),) if gold else ()
    return QAExample(qid, "what?", f"{gold or 'none'} context", answers, title), best, margin


def outputs_of(rows):
    """The answer function's arrays that tuning reads: each row's best span with score 0 and null score = margin."""
    return {"best_text": np.array([row[1] for row in rows], dtype=object),
            "null_score": np.array([row[2] for row in rows], np.float32),
            "score": np.zeros(len(rows), np.float32), "nbest_score": np.zeros((len(rows), 1), np.float32)}


def score(rows):
    examples, outputs = [row[0] for row in rows], outputs_of(rows)
    return held_out_tuned_f1(examples, outputs), tuned_null_threshold(examples, outputs)[0]


def served_f1(rows, cut):
    """The F1 of answering each row's best span when its margin is <= cut, as the served graph does."""
    predictions = {row[0].qid: row[1] if row[2] <= cut else "" for row in rows}
    return squad_v2_metrics([row[0] for row in rows], predictions)["f1"]


def test_the_tuned_f1_is_what_its_threshold_gives_and_no_threshold_gives_more():
    """Random margins with ties: the official sweep can stop inside a group of equal scores, which no
    threshold reproduces; tuning cuts between distinct margins only."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        rows = [question(f"q{i}", "T", ["x", None][int(rng.integers(2))], ["x", "y"][int(rng.integers(2))],
                         float(rng.integers(-3, 4))) for i in range(int(rng.integers(1, 12)))]
        tuned, cut = tuned_null_threshold([row[0] for row in rows], outputs_of(rows))
        assert tuned == pytest.approx(served_f1(rows, cut)), trial
        assert all(tuned >= served_f1(rows, other) - 1e-9 for other in [VERY_NEGATIVE] + [row[2] for row in rows])


def test_margins_beyond_where_float32_sigmoid_saturates_are_told_apart():
    """null - best of 0, 20 and 30: float32 no-answer probabilities 0.5, 1.0, 1.0. Tuned on those, the
    cut was logit(1 - 1e-12) = 27.6, so tuned_f1 counted the third question answered and the served
    threshold did not answer it."""
    rows = [question(f"q{i}", "T", "x", "x", margin) for i, margin in enumerate((0.0, 20.0, 30.0))]
    tuned, cut = tuned_null_threshold([row[0] for row in rows], outputs_of(rows))
    assert (tuned, cut) == (100.0, 30.0)


def test_margins_that_float32_rounds_together_are_one_margin():
    """null 8 + 1 ulp minus best spans 2^-30 and 0: two float64 margins, one float32 margin (the served
    graph subtracts in float32). Cut between the float64 ones, tuned_f1 said 100 where the served
    threshold answered both questions (50)."""
    examples = [question("a", "T", "x", "x", 0.0)[0], question("b", "T", None, "y", 0.0)[0]]
    null = np.float32(8.0) + np.spacing(np.float32(8.0))
    outputs = {"best_text": np.array(["x", "y"], dtype=object), "null_score": np.array([null, null], np.float32),
               "score": np.array([2.0 ** -30, 0.0], np.float32), "nbest_score": np.zeros((2, 1), np.float32)}
    tuned, cut = tuned_null_threshold(examples, outputs)
    served = outputs["null_score"] - outputs["score"] <= np.float32(cut)  # the graph's rule, in float32
    predictions = {e.qid: text if answer else "" for e, text, answer in zip(examples, outputs["best_text"], served)}
    assert tuned == pytest.approx(squad_v2_metrics(examples, predictions)["f1"]) == 50.0


def test_when_answering_never_helps_the_threshold_answers_nothing():
    rows = [question("a", "T", None, "x", -1.0), question("b", "T", "x", "wrong", 2.0)]
    tuned, cut = tuned_null_threshold([row[0] for row in rows], outputs_of(rows))
    assert (tuned, cut) == (50.0, VERY_NEGATIVE)


def test_each_fold_is_answered_at_the_threshold_tuned_on_the_other():
    a, b = titled(0), titled(1)
    rows = [question("a1", a, "x", "x", 0.2), question("a2", a, None, "y", 0.4), question("a3", a, "z", "z", 0.6),
            question("b1", b, "x", "x", 0.2), question("b2", b, "w", "w", 0.5), question("b3", b, None, "q", 0.7)]
    held_out, tuned = score(rows)
    # Tuned on b: answer at margin <= 0.5, so a1 right, a2 wrongly answered, a3 wrongly left out: 1 of 3.
    # Tuned on a: answer at margin <= 0.2, so b1 right, b2 left out, b3 rightly left out: 2 of 3.
    assert held_out == pytest.approx(100 * 3 / 6)
    # One threshold tuned on all six questions (answer at margin <= 0.6) gets 5 of 6 right.
    assert tuned == pytest.approx(100 * 5 / 6)


def test_one_article_has_no_held_out_score():
    rows = [question("a1", "only", "x", "x", 0.2), question("a2", "only", None, "y", 0.4)]
    assert score(rows)[0] is None


def test_a_questions_fold_depends_on_its_article_only():
    assert article_fold(QAExample("1", "who?", "one context", title="T"), 2) == \
        article_fold(QAExample("2", "when?", "another context", title="T"), 2)
    untitled = [article_fold(QAExample(str(i), "q", f"context {i}"), 2) for i in range(20)]
    assert set(untitled) == {0, 1}, "untitled questions fall back to their context"


def test_no_answer_auc_counts_ordered_pairs_and_half_the_ties():
    # unanswerable margins 2 and 3, answerable 1 and 3: pairs won 1 + 0 + 1 + half a tie, of 4
    rows = [question("a", "T", "x", "x", 1.0), question("b", "T", None, "x", 2.0),
            question("c", "T", None, "x", 3.0), question("d", "T", "x", "x", 3.0)]
    assert no_answer_auc([row[0] for row in rows], outputs_of(rows)) == pytest.approx(2.5 / 4)
    rng = np.random.default_rng(1)
    for trial in range(50):
        rows = [question(f"q{i}", "T", ["x", None][i % 2], "x", float(rng.integers(-3, 4))) for i in range(2, 30)]
        margins = {row[0].qid: row[2] for row in rows}
        pos = [margins[row[0].qid] for row in rows if not row[0].answers]
        neg = [margins[row[0].qid] for row in rows if row[0].answers]
        pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
        assert no_answer_auc([row[0] for row in rows], outputs_of(rows)) == pytest.approx(pairs), trial


def test_no_answer_auc_ranks_a_question_without_a_valid_span_as_most_unanswerable():
    rows = [question("a", "T", "x", "x", 5.0), question("b", "T", None, "", 0.0)]
    outputs = outputs_of(rows)
    outputs["nbest_score"][1, 0] = VERY_NEGATIVE  # no valid span: margin +inf
    assert no_answer_auc([row[0] for row in rows], outputs) == 1.0
    assert no_answer_auc([rows[0][0]], outputs_of(rows[:1])) is None


def test_best_span_f1_scores_answerable_questions_whatever_their_margin():
    rows = [question("a", "T", "x", "x", 100.0), question("b", "T", "x y", "x", -1.0),
            question("c", "T", None, "x", -5.0)]
    assert best_span_f1([row[0] for row in rows], [row[1] for row in rows]) == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert best_span_f1([rows[2][0]], [rows[2][1]]) is None
