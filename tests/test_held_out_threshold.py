"""The held-out tuned F1: a no-answer threshold tuned on some articles, scored on the others."""

import numpy as np
import pytest

from road_tf.data.examples import Answer, QAExample
from road_tf.evaluation.qa_eval import article_fold, held_out_tuned_f1, tuned_null_threshold


def titled(fold):
    """A title whose article lands in `fold` of 2."""
    return next(title for title in (f"article {i}" for i in range(100))
                if article_fold(QAExample("q", "q", "c", title=title), 2) == fold)


def question(qid, title, gold, best, na_prob):
    answers = (Answer(gold, 0),) if gold else ()
    return QAExample(qid, "what?", f"{gold or 'none'} context", answers, title), best, na_prob


def score(rows):
    examples = [row[0] for row in rows]
    outputs = {"best_text": np.array([row[1] for row in rows], dtype=object),
               "no_answer_probability": np.array([row[2] for row in rows])}
    return held_out_tuned_f1(examples, outputs), tuned_null_threshold(examples, outputs)[0]


def test_each_fold_is_answered_at_the_threshold_tuned_on_the_other():
    a, b = titled(0), titled(1)
    rows = [question("a1", a, "x", "x", 0.2), question("a2", a, None, "y", 0.4), question("a3", a, "z", "z", 0.6),
            question("b1", b, "x", "x", 0.2), question("b2", b, "w", "w", 0.5), question("b3", b, None, "q", 0.7)]
    held_out, tuned = score(rows)
    # Tuned on b: answer at na <= 0.5, so a1 right, a2 wrongly answered, a3 wrongly left out: 1 of 3.
    # Tuned on a: answer at na <= 0.2, so b1 right, b2 left out, b3 rightly left out: 2 of 3.
    assert held_out == pytest.approx(100 * 3 / 6)
    # One threshold tuned on all six questions (answer at na <= 0.6) gets 5 of 6 right.
    assert tuned == pytest.approx(100 * 5 / 6)


def test_one_article_has_no_held_out_score():
    rows = [question("a1", "only", "x", "x", 0.2), question("a2", "only", None, "y", 0.4)]
    assert score(rows)[0] is None


def test_a_questions_fold_depends_on_its_article_only():
    assert article_fold(QAExample("1", "who?", "one context", title="T"), 2) == \
        article_fold(QAExample("2", "when?", "another context", title="T"), 2)
    untitled = [article_fold(QAExample(str(i), "q", f"context {i}"), 2) for i in range(20)]
    assert set(untitled) == {0, 1}, "untitled questions fall back to their context"
