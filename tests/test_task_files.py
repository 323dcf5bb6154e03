"""`multitask.task_files`: local files for the non-main tasks of a multi-task stage, and their dev split."""

import hashlib
import json
import os

import numpy as np
import pytest

from conftest import shared_file
from road_tf import train
from road_tf.config import load_config
from road_tf.data import sources
from road_tf.data.tokenizer import WordPieceTokenizer
from road_tf.errors import ConfigError, DataError
from road_tf.registry import task_spec

SENTENCES = [f"sentence number {i} ." for i in range(12)]
SST2_DEV = "data/sst2-dev/sst2-dev-public.tsv.gz"


def write_sentiment_tsv(path, sentences):
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(sentences)))
    return path


def config_with(tmp_path, entry, *pairs):
    """A config whose multi-task stage lists squad2 and sentiment, sentiment read from `entry`."""
    return load_config(None, ["multitask.tasks=[squad2, sentiment]", "multitask.steps=5",
                              f"multitask.task_files=[{entry}]", f"data.cache_dir={tmp_path / 'cache'}", *pairs])


def read_split(config, split):
    files = config.multitask.files_of("sentiment")
    return sources.load_split(task_spec("sentiment"), config.data, split, is_main_task=False, task_files=files)


def test_split_dev_takes_the_first_by_sha256_of_the_text(tmp_path):
    path = write_sentiment_tsv(tmp_path / "all.tsv", SENTENCES)
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {path}, split_dev: 4}}")
    train_examples, dev_examples = read_split(config, "train"), read_split(config, "dev")
    by_hash = sorted(SENTENCES, key=lambda s: hashlib.sha256(s.encode("utf-8")).digest())
    assert sorted(e.text_a for e in dev_examples) == sorted(by_hash[:4])
    assert sorted(e.text_a for e in train_examples) == sorted(by_hash[4:])
    # Each split keeps the file's order, and reading again gives the same split.
    assert [e.guid for e in train_examples] == sorted((e.guid for e in train_examples), key=lambda g: int(g[5:]))
    assert read_split(config, "dev") == dev_examples


def test_without_split_dev_both_files_are_read_whatever_data_source_says(tmp_path):
    train_path = write_sentiment_tsv(tmp_path / "train.tsv", SENTENCES[:7])
    dev_path = write_sentiment_tsv(tmp_path / "dev.tsv", SENTENCES[7:])
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {train_path}, dev_path: {dev_path}}}",
                         "data.source=json", "data.train_path=unused.json", "data.dev_path=unused.json")
    assert [e.text_a for e in read_split(config, "train")] == SENTENCES[:7]
    assert [e.text_a for e in read_split(config, "dev")] == SENTENCES[7:]


def test_sentence_pairs_split_by_both_texts(tmp_path):
    """Pairs hash text_a TAB text_b: pairs sharing a premise still split by their hypothesis."""
    path = tmp_path / "nli.tsv"
    rows = [(f"premise {i // 2}", f"hypothesis {i}") for i in range(10)]
    header = "pairID\tsentence1\tsentence2\tgold_label\n"
    path.write_text(header + "".join(f"p{i}\t{a}\t{b}\tentailment\n" for i, (a, b) in enumerate(rows)))
    config = load_config(None, ["multitask.steps=1", "multitask.tasks=[squad2, mnli]",
                                f"multitask.task_files=[{{task: mnli, train_path: {path}, split_dev: 3}}]"])
    files = config.multitask.files_of("mnli")
    dev = sources.load_split(task_spec("mnli"), config.data, "dev", is_main_task=False, task_files=files)
    expected = sorted(rows, key=lambda r: hashlib.sha256(f"{r[0]}\t{r[1]}".encode("utf-8")).digest())[:3]
    assert sorted((e.text_a, e.text_b) for e in dev) == sorted(expected)


def test_questions_split_by_question_and_context(tmp_path):
    """A span task listed in task_files (squad2 beside a sentiment main task) splits its questions."""
    questions = [(f"q{i}", f"what is {i} ?", f"context {i % 3} holds {i}") for i in range(8)]
    paragraphs = [{"context": context, "qas": [{"id": qid, "question": question, "is_impossible": True,
                                                 "answers": []}]} for qid, question, context in questions]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    config = load_config(None, ["task=sentiment", "multitask.steps=1", "multitask.tasks=[sentiment, squad2]",
                                f"multitask.task_files=[{{task: squad2, train_path: {path}, split_dev: 2}}]"])
    files = config.multitask.files_of("squad2")
    dev = sources.load_split(task_spec("squad2"), config.data, "dev", is_main_task=False, task_files=files)
    expected = sorted(questions, key=lambda q: hashlib.sha256(f"{q[1]}\t{q[2]}".encode("utf-8")).digest())[:2]
    assert sorted(e.qid for e in dev) == sorted(q[0] for q in expected)


def test_copies_of_one_text_never_straddle_the_split(tmp_path):
    """The last dev text given three times: its other copies were trained on, and scored again on dev."""
    by_hash = sorted(SENTENCES, key=lambda s: hashlib.sha256(s.encode("utf-8")).digest())
    path = write_sentiment_tsv(tmp_path / "copies.tsv", SENTENCES + [by_hash[3]] * 2)
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {path}, split_dev: 4}}")
    assert sorted(e.text_a for e in read_split(config, "dev")) == sorted(by_hash[:4] + [by_hash[3]] * 2)
    assert sorted(e.text_a for e in read_split(config, "train")) == sorted(by_hash[4:])
    only_copies = write_sentiment_tsv(tmp_path / "same.tsv", [SENTENCES[0]] * 3)
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {only_copies}, split_dev: 1}}")
    with pytest.raises(DataError, match="all copies of the dev split's texts; none is left to train on"):
        read_split(config, "train")


def test_split_dev_must_leave_examples_to_train_on(tmp_path):
    path = write_sentiment_tsv(tmp_path / "few.tsv", SENTENCES[:3])
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {path}, split_dev: 3}}")
    with pytest.raises(DataError, match=rf"^{path}: holds 3 examples; taking 3 for dev leaves none to train on$"):
        read_split(config, "train")


@pytest.mark.parametrize("missing", ["train_path", "dev_path"])
def test_preflight_names_a_missing_task_file(tmp_path, missing):
    present = write_sentiment_tsv(tmp_path / "present.tsv", SENTENCES)
    absent = tmp_path / "absent.tsv"
    paths = {"train_path": present, "dev_path": present, missing: absent}
    entry = f"{{task: sentiment, train_path: {paths['train_path']}, dev_path: {paths['dev_path']}}}"
    config = config_with(tmp_path, entry, "export.enabled=false")
    with pytest.raises(DataError) as error:
        train.preflight(config, tmp_path / "run")
    assert str(error.value) == f"{absent}: cannot read file: No such file or directory"


@pytest.mark.parametrize("kind", ["folder", "device", "pipe"])
def test_preflight_refuses_data_paths_that_are_not_files(tmp_path, kind):
    """A run reads its data more than once: a pipe would be empty the second time, a device never ends."""
    present = write_sentiment_tsv(tmp_path / "present.tsv", SENTENCES)
    odd = {"folder": tmp_path, "device": "/dev/zero", "pipe": tmp_path / "pipe"}[kind]
    if kind == "pipe":
        os.mkfifo(odd)
    what = "a folder, not a file" if kind == "folder" else "a device or pipe, not a file"
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {present}, dev_path: {odd}}}", "export.enabled=false")
    with pytest.raises(ConfigError, match=f"^multitask.task_files\\[0\\].dev_path: {odd}: {what}"):
        train.preflight(config, tmp_path / "run")
    config = load_config(None, ["data.source=json", f"data.train_path={odd}", f"data.dev_path={odd}",
                                f"data.cache_dir={tmp_path / 'cache'}", "export.enabled=false"])
    with pytest.raises(ConfigError, match=f"^data.train_path: {odd}: {what}"):
        train.preflight(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_preflight_skips_task_files_without_a_multitask_stage(tmp_path):
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {tmp_path / 'absent.tsv'}, split_dev: 2}}",
                         "multitask.steps=0", "export.enabled=false")
    train.preflight(config, tmp_path / "run")


def test_feature_cache_follows_the_split_count(tmp_path):
    """The same file under another split_dev gives other dev examples, so it is featurized again."""
    path = write_sentiment_tsv(tmp_path / "all.tsv", SENTENCES)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nsentence\n")
    tokenizer = WordPieceTokenizer(vocab)
    builds = []

    def build():
        builds.append(1)
        return {"token_ids": np.zeros((2, 4), np.int32)}

    for split_dev in (2, 3, 2):
        config = config_with(tmp_path, f"{{task: sentiment, train_path: {path}, split_dev: {split_dev}}}")
        sources.cached_features("sentiment", "dev", read_split(config, "dev"), tokenizer, config.data, build)
    assert len(builds) == 2
    assert len(list((tmp_path / "cache" / "features").glob("sentiment-dev-*.tfrecord"))) == 2


def test_shared_sst2_dev_splits_into_100_dev_and_363_train(tmp_path):
    path = shared_file(SST2_DEV)
    config = config_with(tmp_path, f"{{task: sentiment, train_path: {path}, split_dev: 100}}")
    train_examples, dev_examples = read_split(config, "train"), read_split(config, "dev")
    assert (len(train_examples), len(dev_examples)) == (363, 100)
    assert not {e.text_a for e in train_examples} & {e.text_a for e in dev_examples}
    assert {e.label for e in dev_examples} == {0, 1}
