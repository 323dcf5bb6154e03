"""The synthetic corpus: determinism, caching, SQuAD answer offsets and difficulty, and that every
file reads back through the project's own readers with sensible label balance."""

import collections
import json
import os
import random
import re

import numpy as np
import pytest

from road_tf.data import synthetic
from road_tf.data.glue import read_mnli_tsv, read_qqp_tsv
from road_tf.data.sentiment import read_sentiment_tsv
from road_tf.data.squad import read_squad_json
from road_tf.errors import RoadError

TRAIN, DEV = 1200, 200


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default-size corpus for seed 0: generate()'s dict of paths."""
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), seed=0, train_size=TRAIN, dev_size=DEV)


@pytest.fixture(scope="module")
def train_questions():
    """The SyntheticQuestion records behind squad/train.json for seed 0 (with how each was made)."""
    return synthetic.squad_questions(random.Random("0:squad"), TRAIN, "train", set())


def _all_files(paths):
    return {f"{corpus}/{split}": path for corpus, splits in paths.items() for split, path in splits.items()}


def _read_bytes(paths):
    return {key: open(path, "rb").read() for key, path in _all_files(paths).items()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(corpus, tmp_path):
    again = synthetic.generate(tmp_path / "again", seed=0, train_size=TRAIN, dev_size=DEV)
    other = synthetic.generate(tmp_path / "other", seed=1, train_size=TRAIN, dev_size=DEV)
    first, second, third = _read_bytes(corpus), _read_bytes(again), _read_bytes(other)
    assert set(first) == {f"{c}/{s}" for c in ("squad", "nli", "para", "sentiment") for s in ("train", "dev")}
    assert first == second
    assert all(first[key] != third[key] for key in first)


def test_existing_corpus_is_kept_and_changed_settings_regenerate(tmp_path):
    paths = synthetic.generate(tmp_path, seed=3, train_size=30, dev_size=10)
    files = _all_files(paths)
    stamps = {key: (path, os.stat(path).st_mtime_ns) for key, path in files.items()}
    assert synthetic.generate(tmp_path, seed=3, train_size=30, dev_size=10) == paths
    assert all(os.stat(path).st_mtime_ns == stamp for path, stamp in stamps.values())
    assert json.loads((tmp_path / synthetic.MARKER_NAME).read_text())["seed"] == 3

    before = _read_bytes(paths)
    synthetic.generate(tmp_path, seed=3, train_size=30, dev_size=12)
    after = _read_bytes(paths)
    assert after["squad/train"] == before["squad/train"]  # train does not depend on dev_size
    assert after["squad/dev"] != before["squad/dev"]
    assert len(read_squad_json(paths["squad"]["dev"])) == 12
    assert len(read_sentiment_tsv(paths["sentiment"]["dev"])) == 12

    synthetic.generate(tmp_path, seed=4, train_size=30, dev_size=12)
    assert _read_bytes(paths)["squad/train"] != after["squad/train"]

    for damaged in ("{not json", "[" * 50_000):  # JSON nested too deeply was a RecursionError traceback
        (tmp_path / synthetic.MARKER_NAME).write_text(damaged)
        synthetic.generate(tmp_path, seed=4, train_size=30, dev_size=12)
        assert json.loads((tmp_path / synthetic.MARKER_NAME).read_text())["train_size"] == 30
    assert not [p.name for p in tmp_path.rglob(".*")], "temporary files were left behind"


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        synthetic.generate(tmp_path, train_size=0)


@pytest.mark.parametrize("blocked, message", [
    ("squad", "{path} is a file, not a folder; move it away"),
    ("synthetic.json", "{path} is a folder, not the corpus' marker file; move it away"),
])
def test_something_in_the_way_of_the_corpus_is_one_road_error(tmp_path, blocked, message):
    """A file where a corpus folder goes was a FileExistsError (a traceback in pipelines.local_runner),
    a folder where the marker goes an IsADirectoryError."""
    path = tmp_path / blocked
    if blocked == "squad":
        path.write_text("x")
    else:
        path.mkdir()
    with pytest.raises(RoadError, match=f"^{re.escape(message.format(path=path))}$"):
        synthetic.generate(tmp_path, train_size=5, dev_size=5)


def test_squad_answers_are_exact_substrings_at_their_offsets(corpus):
    for split, size in (("train", TRAIN), ("dev", DEV)):
        with open(corpus["squad"][split]) as handle:
            document = json.load(handle)
        assert document["version"] == "v2.0"
        count = 0
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    count += 1
                    assert qa["is_impossible"] == (not qa["answers"])
                    for answer in qa["answers"]:
                        start = answer["answer_start"]
                        assert context[start:start + len(answer["text"])] == answer["text"], qa["id"]
        assert count == size
        examples = read_squad_json(corpus["squad"][split])
        assert len(examples) == size and len({e.qid for e in examples}) == size


def test_about_a_third_of_questions_are_unanswerable(corpus):
    for split, low, high in (("train", 0.28, 0.39), ("dev", 0.22, 0.45)):
        examples = read_squad_json(corpus["squad"][split])
        rate = sum(e.is_impossible for e in examples) / len(examples)
        assert low <= rate <= high, (split, rate)
        contexts = collections.Counter(e.context for e in examples)
        assert sum(contexts.values()) / len(contexts) >= 2.5, "expected several questions per context"


def test_generator_metadata_matches_the_written_file(corpus, train_questions):
    written = read_squad_json(corpus["squad"]["train"])
    assert [q.example for q in train_questions] == written


def test_each_relation_is_asked_with_at_least_three_paraphrases(train_questions):
    relations = {relation.name: relation for etype in synthetic.ENTITY_TYPES for relation in etype.relations}
    used = collections.defaultdict(set)
    for question in train_questions:
        template = relations[question.relation].questions[question.template]
        pattern = re.escape(template).replace(re.escape("{e}"), "(.+)")
        match = re.fullmatch(pattern, question.example.question, flags=re.IGNORECASE)
        assert match, (template, question.example.question)
        used[question.relation].add(question.template)
    assert set(used) == set(relations)
    assert all(len(templates) >= 3 for templates in used.values()), dict(used)
    assert all(len(relation.questions) >= 4 for relation in relations.values())


def test_distractors_and_unanswerable_kinds(train_questions):
    kinds = collections.Counter(q.kind for q in train_questions)
    assert set(kinds) == {"answerable", "binding", "unstated", "absent"}
    assert kinds["binding"] >= 0.08 * len(train_questions)
    paragraphs = {q.example.context: q for q in train_questions}
    assert all(len(q.entities) >= 2 for q in paragraphs.values()), "every paragraph has a distractor"
    for question in train_questions:
        context, asked = question.example.context, question.example.question
        assert all(name.lower() in context.lower() for name in question.entities)
        in_question = [name for name in question.entities if name.lower() in asked.lower()]
        if question.kind == "absent":
            assert not in_question
        else:
            assert len(in_question) == 1, (asked, question.entities)
    # Answerable questions are spread over the entities, not just the title entity.
    asked_entities = collections.defaultdict(set)
    for question in train_questions:
        if question.kind == "answerable":
            asked_entities[question.example.context].add(question.example.answers[0].text)
    assert sum(len(values) >= 2 for values in asked_entities.values()) >= 0.5 * len(asked_entities)


def test_dev_entities_are_unseen_in_train(corpus):
    train_titles = {e.title for e in read_squad_json(corpus["squad"]["train"])}
    dev_titles = {e.title for e in read_squad_json(corpus["squad"]["dev"])}
    assert dev_titles and not train_titles & dev_titles


def test_context_lengths_are_mostly_short_with_some_long(corpus):
    contexts = {e.context for e in read_squad_json(corpus["squad"]["train"])}
    words = [len(context.split()) for context in contexts]
    assert sum(w <= 80 for w in words) >= 0.75 * len(words)
    assert sum(w >= 150 for w in words) >= 0.05 * len(words)
    assert max(words) <= 265


def test_nli_files_have_the_glue_mnli_layout_and_balanced_labels(corpus):
    train_header = open(corpus["nli"]["train"]).readline().rstrip("\n").split("\t")
    dev_header = open(corpus["nli"]["dev"]).readline().rstrip("\n").split("\t")
    columns = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    assert train_header == columns + ["label1", "gold_label"]
    assert dev_header == columns + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    for split, size in (("train", TRAIN), ("dev", DEV)):
        examples = read_mnli_tsv(corpus["nli"][split])
        assert len(examples) == size
        counts = collections.Counter(e.label for e in examples)
        assert all(abs(counts[label] - size / 3) <= 1 for label in range(3)), counts
    # Negation words occur in every class, so "not" alone does not give the label away.
    examples = read_mnli_tsv(corpus["nli"]["train"])
    negated = collections.Counter(e.label for e in examples if re.search(r"\b(not|never)\b", e.text_b))
    per_class = collections.Counter(e.label for e in examples)
    assert all(0.05 <= negated[label] / per_class[label] <= 0.7 for label in range(3)), negated


def test_para_files_have_the_glue_qqp_layout_and_balanced_labels(corpus):
    header = open(corpus["para"]["train"]).readline().rstrip("\n").split("\t")
    assert header == ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    for split, size in (("train", TRAIN), ("dev", DEV)):
        examples = read_qqp_tsv(corpus["para"][split])
        assert len(examples) == size
        assert abs(sum(e.label for e in examples) - size / 2) <= 1
        assert all(e.text_a != e.text_b for e in examples)


def test_sentiment_files_are_balanced_distinct_and_learnable_but_not_by_bag_of_words(corpus):
    train = read_sentiment_tsv(corpus["sentiment"]["train"])
    dev = read_sentiment_tsv(corpus["sentiment"]["dev"])
    assert (len(train), len(dev)) == (TRAIN, DEV)
    assert abs(sum(e.label for e in train) - TRAIN / 2) <= 1
    assert len({e.text_a for e in train + dev}) == TRAIN + DEV
    assert any(" not bad " in e.text_a or " hardly " in e.text_a for e in train)
    accuracy = _bag_of_words_accuracy(train, dev)
    assert 0.6 < accuracy < 0.9, accuracy


def _bag_of_words_accuracy(train, dev, steps=1000, learning_rate=0.5):
    """Dev accuracy of a bag-of-words logistic regression (numpy, full-batch gradient descent)."""
    vocab = {word: i for i, word in enumerate(sorted({w for e in train for w in e.text_a.split()}))}

    def features(examples):
        matrix = np.zeros((len(examples), len(vocab) + 1))
        matrix[:, -1] = 1.0
        for row, example in enumerate(examples):
            for word in example.text_a.split():
                if word in vocab:
                    matrix[row, vocab[word]] = 1.0
        return matrix, np.array([e.label for e in examples], dtype=float)

    x, y = features(train)
    weights = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-x @ weights))
        weights -= learning_rate * x.T @ (p - y) / len(y)
    x_dev, y_dev = features(dev)
    return float(np.mean(((x_dev @ weights) > 0) == (y_dev > 0.5)))
