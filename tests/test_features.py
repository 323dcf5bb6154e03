"""Tokenizer windows, span labels, classification features and the feature cache."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from road_tf.data import features as feats
from road_tf.data.examples import Answer, ClassificationExample, QAExample
from road_tf.data.tokenizer import load_tokenizer
from road_tf.data.vocab import MAX_VOCAB_BYTES, read_vocab, vocab_path
from road_tf.distillation.offline import load_offline_features
from road_tf.errors import ConfigError, DataError, RoadError


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def example(qid, question, context, answer=None):
    answers = (Answer(answer, context.index(answer)),) if answer else ()
    return QAExample(qid, question, context, answers)


def test_windows_layout(tokenizer):
    windows = feats.qa_windows(tokenizer, tf.constant(["who?"]), tf.constant(["Ann met Bob."]), 16, 8, 4)
    ids = windows["token_ids"].numpy()[0]
    vocab = tokenizer.vocab
    pieces = [vocab[i] for i in ids[: int(windows["padding_mask"].numpy()[0].sum())]]
    assert pieces == ["[CLS]", "who", "?", "[SEP]", "ann", "met", "bob", ".", "[SEP]"]
    assert windows["segment_ids"].numpy()[0][:9].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    offsets = windows["byte_offsets"].numpy()[0]
    assert offsets[:4].tolist() == [[-1, -1]] * 4
    assert offsets[4].tolist() == [0, 3] and offsets[6].tolist() == [8, 11]


def test_keep_pairs_empties_the_dropped_rows_and_leaves_the_others_as_tokenized(tokenizer):
    questions, contexts = tf.constant(["who?", "what did Ann do?", "when?"]), tf.constant(["Ann met Bob.", "x", "Ann left at noon."])
    tokens = feats.tokenize_pairs(tokenizer, questions, contexts)
    kept = feats.keep_pairs(tokens, tf.constant([True, False, True]))
    for key, value in kept.items():
        rows = value.to_list()
        assert rows[1] == [] and [rows[0], rows[2]] == [tokens[key].to_list()[0], tokens[key].to_list()[2]], key
    windows = feats.pair_windows(tokenizer, kept, 16, 8, 4)
    assert windows["padding_mask"].numpy().sum(axis=1).tolist()[1] == 3
    alone = feats.qa_windows(tokenizer, questions[2:], contexts[2:], 16, 8, 4)
    assert np.array_equal(windows["token_ids"].numpy()[-1], alone["token_ids"].numpy()[0])


def test_long_context_is_split_with_stride_and_answer_labelled_once_per_covering_window(tokenizer):
    context = " ".join(f"w{i}" for i in range(60)) + " the answer is Quixotic ."
    ex = example("q", "what is it?", context, "Quixotic")
    features = feats.featurize_qa(tokenizer, [ex], 32, 8, 8)
    assert len(features["token_ids"]) > 3
    labelled = np.flatnonzero(features["start_positions"])
    assert labelled.size >= 1
    for w in labelled:
        offsets = features["char_offsets"][w]
        s, e = features["start_positions"][w], features["end_positions"][w]
        assert context[offsets[s][0]:offsets[e][1]] == "Quixotic"
    # Windows that do not contain the whole answer point at [CLS].
    unlabelled = np.setdiff1d(np.arange(len(features["token_ids"])), labelled)
    assert (features["end_positions"][unlabelled] == 0).all()


def test_non_ascii_offsets_are_characters(tokenizer):
    context = "Zürich café ½ and Ærø island, then Straße."
    ex = example("q", "which island?", context, "Ærø island")
    features = feats.featurize_qa(tokenizer, [ex], 48, 8, 16)
    s, e = features["start_positions"][0], features["end_positions"][0]
    offsets = features["char_offsets"][0]
    assert context[offsets[s][0]:offsets[e][1]] == "Ærø island"


def test_unanswerable_points_at_cls(tokenizer):
    features = feats.featurize_qa(tokenizer, [example("q", "who?", "Nobody here.")], 16, 8, 4)
    assert features["start_positions"].tolist() == [0] and features["end_positions"].tolist() == [0]


def one_window_labels(offsets, answer_start, answer_end):
    """Reference: the first token ending after the answer start and the last token starting before
    its end, when the window's context covers the whole answer; else (0, 0)."""
    context = [i for i in range(len(offsets)) if offsets[i][0] >= 0]
    if not context or offsets[context[0]][0] > answer_start or offsets[context[-1]][1] < answer_end:
        return 0, 0
    starts = [i for i in context if offsets[i][1] > answer_start]
    ends = [i for i in context if offsets[i][0] < answer_end]
    return (starts[0], ends[-1]) if starts and ends and starts[0] <= ends[-1] else (0, 0)


def random_windows(rng, count, length=12):
    """int [count, length, 2] windows: [CLS], 2 question tokens, context tokens with gaps, then padding (-1)."""
    windows = -np.ones((count, length, 2), np.int64)
    for window in windows:
        start = int(rng.integers(0, 20))
        for position in range(3, int(rng.integers(3, length))):
            end = start + int(rng.integers(1, 4))
            window[position] = (start, end)
            start = end + int(rng.integers(0, 2))
    return windows


def test_span_labels_of_all_windows_match_the_one_window_reference():
    rng = np.random.default_rng(0)
    windows = random_windows(rng, 400)
    seen = set()
    for answer_start in range(0, 40, 3):
        for length in (1, 2, 5):
            starts, ends = feats.span_labels(windows, answer_start, answer_start + length)
            expected = [one_window_labels(window, answer_start, answer_start + length) for window in windows]
            assert list(zip(starts.tolist(), ends.tolist())) == expected
            seen.update(expected)
    assert (0, 0) in seen and len(seen) > 20
    starts, ends = feats.span_labels(windows, None, None)
    assert not starts.any() and not ends.any() and starts.dtype == np.int32


def test_byte_to_char_offsets():
    text = "aé½b"
    assert feats.byte_to_char_offsets(text, np.array([0, 1, 3, 5, 6, -1])).tolist() == [0, 1, 2, 3, 4, -1]


def test_classification_pairs_truncate_to_length(tokenizer):
    examples = [ClassificationExample("1", "a " * 40, "b " * 40, 1), ClassificationExample("2", "short", "pair", 0)]
    features = feats.featurize_classification(tokenizer, examples, 24)
    assert features["token_ids"].shape == (2, 24)
    assert features["padding_mask"][0].sum() == 24
    assert features["label"].tolist() == [1, 0]
    seg = features["segment_ids"][1]
    assert seg[:3].tolist() == [0, 0, 0] and seg[3:5].tolist() == [1, 1]


def test_cache_round_trip_and_incomplete_cache_rebuilds(tmp_path):
    data = {"a": np.arange(12, dtype=np.int32).reshape(3, 4), "b": np.arange(3, dtype=np.int32)}
    path = tmp_path / "f.tfrecord"
    calls = []
    first = feats.cached(path, lambda: calls.append(1) or data)
    again = feats.cached(path, lambda: calls.append(1) or data)
    assert calls == [1]
    np.testing.assert_array_equal(again["a"], data["a"])
    np.testing.assert_array_equal(first["b"], again["b"])
    path.with_suffix(".json").unlink()  # as if the build was killed before finishing
    assert feats.read_feature_cache(path) is None


def test_cache_key_follows_every_field_of_the_examples_and_the_settings(tokenizer):
    example = QAExample("q1", "Who?", "Ann met Bob.", (Answer("Ann", 0),), "T")
    key = feats.cache_key([example], tokenizer, max_seq_length=128)
    assert key == feats.cache_key([QAExample("q1", "Who?", "Ann met Bob.", (Answer("Ann", 0),), "T")], tokenizer,
                                  max_seq_length=128)
    assert key != feats.cache_key([example], tokenizer, max_seq_length=64)
    others = [dataclasses.replace(example, answers=(Answer("Bob", 8),)), dataclasses.replace(example, title="U"),
              dataclasses.replace(example, question="Who met?"), dataclasses.replace(example, answers=()),
              dataclasses.replace(example, qid="q2"), dataclasses.replace(example, context="Ann met Bo.")]
    assert len({key, *(feats.cache_key([other], tokenizer, max_seq_length=128) for other in others)}) == 7
    assert feats.cache_key([example, example], tokenizer, max_seq_length=128) != key
    pair = ClassificationExample("g1", "a", "b", 1)
    pairs = [pair, dataclasses.replace(pair, text_b=None), dataclasses.replace(pair, label=0),
             dataclasses.replace(pair, text_a="c")]
    assert len({feats.cache_key([other], tokenizer, max_seq_length=128) for other in pairs}) == 4


CACHE = {"a": np.arange(400, dtype=np.int32).reshape(100, 4), "b": np.linspace(0, 1, 100, dtype=np.float32)}


def _damage(path, how):
    """Damages the cache at `path` (written from CACHE) in one of the ways a disk or a person can."""
    meta = path.with_suffix(".json")
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif how == "garbage records":
        path.write_bytes(b"\x00garbage" * 100)
    elif how == "garbage sidecar":
        meta.write_text("{garbage")
    elif how == "sidecar a list":
        meta.write_text("[1, 2]")
    elif how == "sidecar nested too deeply":  # a RecursionError traceback before
        meta.write_text("[" * 50_000)
    elif how == "rows disagree":
        meta.write_text(meta.read_text().replace('"rows": 100', '"rows": 99'))
    elif how == "a shape of 2**32 values":  # TensorFlow's parser crashed the process (SIGSEGV)
        meta.write_text(meta.read_text().replace('"shape": [4]', '"shape": [65536, 65536]'))
    elif how == "a shape of 41 axes":  # numpy's ValueError (at most 32 dimensions) came out of the read
        meta.write_text(meta.read_text().replace('"shape": [4]', f'"shape": {[1] * 40 + [4]}'))


@pytest.mark.parametrize("how", ["truncated", "garbage records", "garbage sidecar", "sidecar a list",
                                 "sidecar nested too deeply", "rows disagree",
                                 "a shape of 2**32 values", "a shape of 41 axes"])
def test_a_damaged_cache_names_its_file_and_is_rebuilt(tmp_path, how, caplog):
    path = tmp_path / "f.tfrecord"
    feats.write_feature_cache(path, CACHE)
    assert feats.verify_feature_cache(path)
    _damage(path, how)
    for check in (feats.read_feature_cache, feats.verify_feature_cache):
        with pytest.raises(feats.InvalidCache, match=f"^{path}: not a valid feature cache") as error:
            check(path)
        assert "\n" not in str(error.value) and "function_node" not in str(error.value)
    rebuilt = feats.cached(path, lambda: CACHE)
    assert "f.tfrecord is damaged" in caplog.text
    np.testing.assert_array_equal(feats.read_feature_cache(path)["b"], rebuilt["b"])


def test_a_damaged_teacher_logits_cache_stops_a_run_naming_the_command_that_rebuilds_it(tmp_path):
    path = tmp_path / "teacher.tfrecord"
    feats.write_feature_cache(path, CACHE)
    _damage(path, "truncated")
    with pytest.raises(DataError, match=f"^{path}: a damaged teacher-logits cache \\(.+\\); build it again with "
                                        "python -m road_tf.cache_teacher$"):
        load_offline_features(path, {feats.TOKEN_IDS: CACHE["a"]}, ())


def test_a_folder_where_a_cache_goes_is_named_and_nothing_is_left_behind(tmp_path):
    path = tmp_path / "f.tfrecord"
    path.mkdir()
    for call in (lambda: feats.read_feature_cache(path), lambda: feats.write_feature_cache(path, CACHE)):
        with pytest.raises(feats.DataError, match=f"^{path}: is a folder, where a feature cache file goes"):
            call()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    for folder, kind in (("file", "a file"), ("dangling", "a broken symbolic link")):
        for below in ("f.tfrecord", "features/f.tfrecord"):
            with pytest.raises(RoadError, match=f"^{tmp_path / folder} is {kind}, not a folder; move it away$"):
                feats.write_feature_cache(tmp_path / folder / below, CACHE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "f.tfrecord", "file"]


def test_a_cache_written_through_a_link_replaces_the_file_it_names(tmp_path):
    """The link was replaced by a regular file and its target kept the old records."""
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.tfrecord"
    target.write_text("old")
    link = tmp_path / "teacher.tfrecord"
    link.symlink_to(target)
    feats.write_feature_cache(link, CACHE)
    assert link.is_symlink() and sorted(p.name for p in (tmp_path / "store").iterdir()) == ["real.tfrecord"]
    np.testing.assert_array_equal(feats.read_feature_cache(link)["b"], CACHE["b"])


@pytest.mark.parametrize("length", [246, 255])
def test_a_cache_whose_name_is_near_the_longest_is_written(tmp_path, length):
    path = tmp_path / ("c" * (length - len(".tfrecord")) + ".tfrecord")
    feats.write_feature_cache(path, CACHE)
    np.testing.assert_array_equal(feats.read_feature_cache(path)["b"], CACHE["b"])


def test_a_failed_cache_write_removes_its_temporary_file(tmp_path, monkeypatch):
    def fail(row):
        raise RuntimeError("disk full")

    monkeypatch.setattr(feats, "_example_proto", fail)
    with pytest.raises(RuntimeError):
        feats.write_feature_cache(tmp_path / "f.tfrecord", CACHE)
    assert list(tmp_path.iterdir()) == []


def test_a_vocabulary_line_ends_only_at_a_newline(tmp_path):
    """Pieces holding other line breaks (\\x85, \\u2028, \\x1c) are one piece each, as Hugging Face and
    TensorFlow read vocab.txt; splitlines made two of each and shifted every later id. A "\\r\\n"
    ending is one line end."""
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a\x85b", "c\u2028d", "e\x1cf", "the"]
    path = tmp_path / "vocab.txt"
    path.write_bytes(("\r\n".join(pieces[:4]) + "\r\n" + "\n".join(pieces[4:]) + "\n").encode("utf-8"))
    assert read_vocab(path) == pieces


def test_a_vocabulary_larger_than_the_limit_is_refused_unread(tmp_path):
    """read_vocab read the whole file into memory: a huge one (or /proc/kcore) exhausted it."""
    path = tmp_path / "vocab.txt"
    with open(path, "wb") as stream:
        stream.truncate(MAX_VOCAB_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError) as error:
        read_vocab(path)
    assert str(error.value) == f"data.vocab: {path}: larger than {MAX_VOCAB_BYTES:,} bytes, too large for a vocabulary"


@pytest.mark.parametrize("layout, message", [
    ("folder", "data.vocab: {path} is a folder, not a vocabulary file (one WordPiece per line)"),
    ("missing", "data.vocab: no vocabulary file at {path}"),
])
def test_a_vocabulary_path_that_is_no_file_is_named_for_what_it_is(tmp_path, layout, message):
    """A folder given as data.vocab was reported as "no vocabulary file at" it."""
    path = tmp_path / "vocab"
    if layout == "folder":
        path.mkdir()
    with pytest.raises(ConfigError) as error:
        vocab_path(str(path))
    assert str(error.value) == message.format(path=path)


def test_span_tasks_train_on_model_inputs_and_labels_only():
    """A span task's training arrays (batched every step and cached) are the model inputs and span
    labels; featurize_qa's char_offsets and example_index stay out."""
    from road_tf.config import DataConfig
    from road_tf.tasks import get_task

    examples = [QAExample("q1", "Who?", "Ada wrote it.", (Answer("Ada", 0),))]
    features = get_task("squad2").featurize(load_tokenizer(), examples, DataConfig(max_seq_length=32))
    assert set(features) == {*feats.MODEL_INPUTS, feats.START, feats.END}
