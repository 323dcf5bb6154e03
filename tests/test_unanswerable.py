"""data.unanswerable_share: answerable training questions also asked of their context without the
sentences that hold their answers, as unanswerable questions."""

import pytest

from road_tf.config import load_config
from road_tf.data import sources, unanswerable
from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import write_squad_json
from road_tf.errors import ConfigError
from road_tf.registry import task_spec

CONTEXT = ("The Eiffel Tower was finished in 1889 for the World's Fair. It is 330 metres tall and stands on "
           "the Champ de Mars in Paris. The company of Gustave Eiffel designed and built the tower. "
           "Millions of visitors climb it every year.")
BUILDER = Answer("Gustave Eiffel", CONTEXT.index("Gustave"))


def question(qid="q1", answers=(BUILDER,), context=CONTEXT):
    return QAExample(qid, "Who built the tower?", context, tuple(answers), "Eiffel Tower")


def test_the_sentence_holding_the_answer_is_removed_and_the_copy_has_no_answer():
    copy = unanswerable.without_answer_sentences(question())
    assert copy == QAExample("q1-unanswerable", "Who built the tower?",
                             "The Eiffel Tower was finished in 1889 for the World's Fair. It is 330 metres tall and "
                             "stands on the Champ de Mars in Paris. Millions of visitors climb it every year.",
                             (), "Eiffel Tower")


def test_every_answers_sentences_go_and_an_answer_across_two_sentences_takes_both():
    fair = Answer("World's Fair", CONTEXT.index("World's"))
    across = Answer("Paris. The company", CONTEXT.index("Paris."))
    assert unanswerable.without_answer_sentences(question(answers=(BUILDER, fair))).context == (
        "It is 330 metres tall and stands on the Champ de Mars in Paris. Millions of visitors climb it every year.")
    assert unanswerable.without_answer_sentences(question(answers=(across,))).context == (
        "The Eiffel Tower was finished in 1889 for the World's Fair. Millions of visitors climb it every year.")


def test_no_copy_when_the_answer_text_stays_or_too_little_context_is_left():
    repeated = CONTEXT + " Gustave eiffel also built bridges."
    assert unanswerable.without_answer_sentences(question(context=repeated)) is None
    short = "The company of Gustave Eiffel built the tower. It is tall."
    assert unanswerable.without_answer_sentences(question(answers=(Answer("Gustave Eiffel", 15),), context=short)) is None


def test_a_share_of_answerable_questions_is_followed_by_its_copy():
    questions = [question(f"q{i}") for i in range(2000)] + [question("none", answers=())]
    assert unanswerable.with_unanswerable(questions, 0.0) == questions
    every = unanswerable.with_unanswerable(questions, 1.0)
    assert every[0:-1:2] == questions[:-1] and every[-1] == questions[-1]
    assert all(copy.qid == original.qid + "-unanswerable" and not copy.answers
               for original, copy in zip(every[0:-1:2], every[1::2]))
    some = unanswerable.with_unanswerable(questions, 0.3)
    copies = [example.qid for example in some if example.qid.endswith("-unanswerable")]
    assert 0.26 < len(copies) / 2000 < 0.34
    assert copies == [f"{example.qid}-unanswerable" for example in questions[:-1] if unanswerable.chosen(example.qid, 0.3)]
    assert unanswerable.with_unanswerable(questions, 0.3) == some


def test_only_the_main_span_tasks_training_split_gets_copies(tmp_path):
    path = tmp_path / "squad.json"
    write_squad_json(path, [QAExample(f"q{i}", "Who built the tower?", CONTEXT.replace("330", str(300 + i)),
                                      (BUILDER,), f"Article {i}") for i in range(12)])
    base = [f"data.train_path={path}", "data.source=json", "data.split_dev_questions=3",
            f"data.cache_dir={tmp_path / 'cache'}"]
    plain = load_config(None, base).data
    shared = load_config(None, base + ["data.unanswerable_share=1"]).data
    spec = task_spec("squad2")
    train = sources.load_split(spec, plain, "train")
    with_copies = sources.load_split(spec, shared, "train")
    assert with_copies[0::2] == train and len(with_copies) == 2 * len(train)
    assert sources.load_split(spec, shared, "dev") == sources.load_split(spec, plain, "dev")
    capped = load_config(None, base + ["data.unanswerable_share=1", "data.max_train_examples=5"]).data
    assert sources.load_split(spec, capped, "train") == with_copies[:5]
    cloze = task_spec("squad2_cloze")
    assert (sources.load_split(cloze, shared, "train", is_main_task=False)
            == sources.load_split(cloze, plain, "train", is_main_task=False))


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_a_share_outside_zero_to_one_is_refused(value):
    with pytest.raises(ConfigError, match=r"data.unanswerable_share: must be in \[0, 1\], got "):
        load_config(None, [f"data.unanswerable_share={value}"])


def test_a_task_without_spans_is_refused_a_share():
    with pytest.raises(ConfigError, match="data.unanswerable_share: makes unanswerable questions for a span task; "
                                          "task 'mnli' is not one"):
        load_config(None, ["task=mnli", "data.unanswerable_share=0.5"])
