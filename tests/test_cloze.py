"""Task squad2_cloze: cloze questions made from the main SQuAD task's contexts, never its labels."""

import dataclasses

import numpy as np
import pytest

from road_tf.config import load_config
from road_tf.data import cloze, sources
from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import write_squad_json
from road_tf.data.tokenizer import load_tokenizer
from road_tf.registry import task_spec
from road_tf.tasks import get_task
from road_tf.tasks.task import load_task_data
from helpers_tfds import squad_tfds_dataset

CONTEXT = ("The Eiffel Tower was finished in 1889 for the World's Fair. It is 330 metres tall and stands on "
           "the Champ de Mars in Paris. The company of Gustave Eiffel designed and built the tower. Short one here. "
           "visitors climb it every day of the year without a break.")


def articles(count):
    """`count` one-paragraph articles with one question each (contexts differ by a number)."""
    return [QAExample(f"q{i}", "Who built it?", CONTEXT.replace("330", str(300 + i)), (Answer("Gustave Eiffel", CONTEXT.index("Gustave")),),
                      f"Article {i}") for i in range(count)]


def test_sentences_and_candidates():
    spans = cloze.sentence_spans(CONTEXT)
    assert [CONTEXT[s:e] for s, e in spans][:2] == [
        "The Eiffel Tower was finished in 1889 for the World's Fair.",
        "It is 330 metres tall and stands on the Champ de Mars in Paris."]
    sentence = "It is 330 metres tall and stands on the Champ de Mars in Paris."
    found = {(sentence[s:e], word) for s, e, word in cloze.answer_candidates(sentence)}
    assert found == {("330", "how many"), ("Champ de Mars", "what"), ("Paris", "what")}
    assert cloze.answer_candidates("In 1889 it opened with 2 lifts.") == [(3, 7, "when"), (23, 24, "how many")]


def test_each_long_sentence_with_a_candidate_becomes_one_question():
    questions = cloze.context_questions(CONTEXT, "Tower")
    # Sentences 1-3 qualify; "Short one here." is too short and the last has no candidate.
    assert len(questions) == 3
    for question in questions:
        assert question.question.endswith("?") and question.title == "Tower"
        assert any(word in question.question for word in ("when", "how many", "what"))
        if question.answers:
            answer = question.answers[0]
            assert question.context == CONTEXT
            assert CONTEXT[answer.start:answer.start + len(answer.text)] == answer.text
        else:
            # Unanswerable: asked of the context without its sentence.
            assert len(question.context) < len(CONTEXT)
            removed = [CONTEXT[s:e] for s, e in cloze.sentence_spans(CONTEXT)
                       if CONTEXT[s:e] not in question.context]
            assert len(removed) == 1
    assert cloze.context_questions(CONTEXT, "Tower") == questions
    assert len({q.qid for q in questions}) == 3


def test_a_one_sentence_context_is_always_asked_whole():
    sentences = [f"The bridge over the river was opened in {1800 + i} by the city." for i in range(20)]
    questions = [q for sentence in sentences for q in cloze.context_questions(sentence)]
    assert len(questions) == 20
    assert all(q.answers and q.context in sentences for q in questions)
    # Two sentences: about half are asked of the other sentence alone, without an answer.
    pairs = [sentence + " It still carries trains." for sentence in sentences]
    unanswerable = [q for pair in pairs for q in cloze.context_questions(pair) if not q.answers]
    assert 4 <= len(unanswerable) <= 16 and all(q.context == "It still carries trains." for q in unanswerable)


def test_labels_are_never_read_and_each_context_is_used_once():
    examples = articles(30)
    questions = cloze.cloze_questions(examples + examples[:5])
    relabelled = [QAExample(e.qid + "x", "What?", e.context, (), e.title) for e in examples]
    assert questions == cloze.cloze_questions(relabelled)
    assert len(questions) == 3 * 30
    answerable = sum(1 for q in questions if q.answers)
    assert 0.3 < answerable / len(questions) < 0.7


def test_with_json_data_the_cloze_task_reads_the_main_tasks_article_split(tmp_path):
    path = tmp_path / "squad.json"
    write_squad_json(path, articles(12))
    config = load_config(None, [f"data.train_path={path}", "data.source=json", "data.split_dev_questions=3",
                                f"data.cache_dir={tmp_path / 'cache'}", "multitask.tasks=[squad2, squad2_cloze]",
                                "multitask.steps=2"])
    split = {}
    for name in ("squad2", "squad2_cloze"):
        for part in ("train", "dev"):
            examples = sources.load_split(task_spec(name), config.data, part, is_main_task=name == "squad2")
            split[name, part] = {e.title for e in examples}
    assert split["squad2_cloze", "train"] == split["squad2", "train"]
    assert split["squad2_cloze", "dev"] == split["squad2", "dev"]
    assert not split["squad2", "train"] & split["squad2", "dev"]


def test_tfds_contexts_become_cloze_questions():
    tfds = pytest.importorskip("tensorflow_datasets")
    record = {"id": "t1", "title": "Tower", "context": CONTEXT, "question": "Who built it?", "is_impossible": False,
              "answers": [("Gustave Eiffel", CONTEXT.index("Gustave"))]}
    with tfds.testing.mock_data(as_dataset_fn=lambda *args, **kwargs: squad_tfds_dataset([record])):
        questions = cloze.load_cloze_tfds("train")
    assert questions == cloze.context_questions(CONTEXT, "Tower")


def test_other_cloze_questions_from_the_same_file_are_featurized_again(tmp_path, monkeypatch):
    """The feature cache is keyed on the questions the generator makes, not only on the file it read:
    a changed generator (an upgrade, a patch) must not train on the old generator's cached questions."""
    path = tmp_path / "squad.json"
    write_squad_json(path, articles(4))
    config = load_config(None, [f"data.train_path={path}", "data.source=json", "data.split_dev_questions=1",
                                f"data.cache_dir={tmp_path / 'cache'}", "multitask.tasks=[squad2, squad2_cloze]",
                                "multitask.steps=2", "data.max_seq_length=64", "data.doc_stride=32",
                                "data.max_query_length=16"])
    task, tokenizer = get_task("squad2_cloze"), load_tokenizer()
    cache = tmp_path / "cache" / "features"
    first = load_task_data(task, config, tokenizer, is_main_task=False)
    assert len(list(cache.glob("squad2_cloze-train-*.tfrecord"))) == 1
    again = load_task_data(task, config, tokenizer, is_main_task=False)
    assert len(list(cache.glob("squad2_cloze-train-*.tfrecord"))) == 1
    np.testing.assert_array_equal(first.train_features["token_ids"], again.train_features["token_ids"])

    generate = cloze.context_questions
    monkeypatch.setattr(cloze, "context_questions", lambda context, title="": [
        dataclasses.replace(q, question=q.question.replace("what", "which")) for q in generate(context, title)])
    changed = load_task_data(task, config, tokenizer, is_main_task=False)
    assert len(list(cache.glob("squad2_cloze-train-*.tfrecord"))) == 2
    assert not np.array_equal(first.train_features["token_ids"], changed.train_features["token_ids"])
