"""GLUE MNLI/QQP readers: the real file layouts, quote characters, every kind of bad input, and
the TFDS loaders on mocked data."""

import gzip
import logging

import pytest

from road_tf.data import glue, tsv
from road_tf.data.examples import ClassificationExample
from road_tf.errors import ConfigError, DataError

MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")


def _mnli_line(index, premise, hypothesis, label):
    fields = [index, 100 + index, f"{100 + index}{label[0]}", "fiction", "( a b )", "( c d )", "(ROOT)", "(ROOT)",
              premise, hypothesis, label, label]
    return "\t".join(str(field) for field in fields)


def _write(path, lines, compress=False):
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def mnli_lines():
    return [
        MNLI_HEADER,
        _mnli_line(0, 'He said "hello" to me.', "He spoke.", "entailment"),
        _mnli_line(1, 'A stray " quote opens nothing', "The weather is fine.", "neutral"),
        _mnli_line(2, "The cat sleeps.", 'The cat is "running\'.', "contradiction"),
    ]


def test_mnli_reads_quotes_literally_and_maps_labels_like_tfds(tmp_path, mnli_lines):
    examples = glue.read_mnli_tsv(_write(tmp_path / "train.tsv", mnli_lines))
    assert examples == [
        ClassificationExample("100e", 'He said "hello" to me.', "He spoke.", 0),
        ClassificationExample("101n", 'A stray " quote opens nothing', "The weather is fine.", 1),
        ClassificationExample("102c", "The cat sleeps.", 'The cat is "running\'.', 2),
    ]
    assert glue.read_mnli_tsv(_write(tmp_path / "train.tsv.gz", mnli_lines, compress=True)) == examples


def test_label_order_matches_the_installed_tfds_glue_builder():
    from tensorflow_datasets.text import glue as tfds_glue

    configs = {config.name: config for config in tfds_glue.Glue.BUILDER_CONFIGS}
    assert tuple(configs["mnli"].label_classes) == glue.MNLI_LABELS == ("entailment", "neutral", "contradiction")
    assert tuple(configs["qqp"].label_classes) == glue.QQP_LABELS
    assert tuple(configs["sst2"].label_classes) == glue.SST2_LABELS
    assert configs["mnli"].text_features == {"premise": "sentence1", "hypothesis": "sentence2"}


def test_mnli_dev_layout_with_five_annotator_columns(tmp_path):
    header = MNLI_HEADER.replace("label1", "label1\tlabel2\tlabel3\tlabel4\tlabel5")
    line = "7\t1\t1n\tslate\t-\t-\t-\t-\tP.\tH.\tneutral\tneutral\tentailment\tneutral\tneutral\tneutral"
    assert glue.read_mnli_tsv(_write(tmp_path / "dev_matched.tsv", [header, line])) == [
        ClassificationExample("1n", "P.", "H.", 1)]


@pytest.mark.parametrize("bad_line, problem", [
    ("0\t1\t1e\tfiction\tonly five fields", "expected 12 tab-separated fields, found 5"),
    (_mnli_line(5, "P.", "H.", "entailment").replace("\tentailment\tentailment", "\tentailment\t-"),
     "unknown gold_label '-'"),
    (_mnli_line(5, "P.", "H.", "entailment") + "\textra", "expected 12 tab-separated fields, found 13"),
])
def test_mnli_bad_record_names_file_and_line(tmp_path, mnli_lines, bad_line, problem):
    path = _write(tmp_path / "train.tsv", mnli_lines[:2] + ["", bad_line] + mnli_lines[2:])
    with pytest.raises(DataError) as caught:
        glue.read_mnli_tsv(path)
    assert caught.value.path == str(path) and caught.value.record == "line 4"
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: record line 4: ")


def test_skip_bad_records_keeps_the_good_ones(tmp_path, mnli_lines):
    path = _write(tmp_path / "train.tsv", mnli_lines[:2] + ["broken line"] + mnli_lines[2:])
    examples = glue.read_mnli_tsv(path, skip_bad_records=True)
    assert [e.guid for e in examples] == ["100e", "101n", "102c"]


def test_non_utf8_bytes_name_the_line(tmp_path, mnli_lines):
    path = tmp_path / "train.tsv"
    path.write_bytes(("\n".join(mnli_lines[:3]) + "\n").encode() + _mnli_line(9, "caf", "x", "neutral").encode()
                     .replace(b"caf", b"caf\xe9") + b"\n")
    with pytest.raises(DataError, match=r"record line 4: not valid UTF-8: byte 0xe9"):
        glue.read_mnli_tsv(path)


def test_missing_column_and_empty_or_missing_file(tmp_path, mnli_lines):
    no_gold = [line.rsplit("\t", 1)[0] for line in mnli_lines]
    with pytest.raises(DataError, match=r"record line 1: header lacks column\(s\) gold_label"):
        glue.read_mnli_tsv(_write(tmp_path / "a.tsv", no_gold))
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(DataError, match="empty.tsv: file is empty"):
        glue.read_mnli_tsv(tmp_path / "empty.tsv")
    with pytest.raises(DataError, match="nope.tsv: cannot read file"):
        glue.read_mnli_tsv(tmp_path / "nope.tsv")


def test_truncated_gzip_names_the_line_it_stopped_at(tmp_path, mnli_lines):
    lines = [mnli_lines[0]] + [_mnli_line(i, f"Premise number {i} is here.", "H.", "neutral") for i in range(400)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "train.tsv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"train.tsv.gz: record line \d+: corrupt or truncated gzip data"):
        glue.read_mnli_tsv(path)


def test_qqp_reader(tmp_path):
    lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
             '5\t1\t2\tWhy is the "sky" blue?\tWhat makes the sky blue?\t1',
             "6\t3\t4\tHow do I cook rice?\tWho wrote Hamlet?\t0"]
    examples = glue.read_qqp_tsv(_write(tmp_path / "dev.tsv.gz", lines, compress=True))
    assert examples == [ClassificationExample("5", 'Why is the "sky" blue?', "What makes the sky blue?", 1),
                        ClassificationExample("6", "How do I cook rice?", "Who wrote Hamlet?", 0)]
    with pytest.raises(DataError, match=r"record line 3: unknown is_duplicate 'yes'"):
        glue.read_qqp_tsv(_write(tmp_path / "bad.tsv", lines[:2] + [lines[2][:-1] + "yes"]))
    # A GLUE QQP test file has no label column.
    with pytest.raises(DataError, match="header lacks column"):
        glue.read_qqp_tsv(_write(tmp_path / "test.tsv", ["id\tquestion1\tquestion2", "0\ta?\tb?"]))


def _fake_records(records):
    """An `as_dataset_fn` for tfds.testing.mock_data that yields exactly `records` (dicts of lists)."""
    import tensorflow as tf

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(records)

    return as_dataset


def test_load_glue_tfds_mnli_maps_features_and_labels():
    import tensorflow_datasets as tfds

    records = {"premise": ["P one.", "P two."], "hypothesis": ["H one.", "H two."], "label": [2, 0], "idx": [0, 1]}
    with tfds.testing.mock_data(as_dataset_fn=_fake_records(records)):
        examples = glue.load_glue_tfds("glue/mnli", "validation_matched")
    assert examples == [ClassificationExample("validation_matched-0", "P one.", "H one.", 2),
                        ClassificationExample("validation_matched-1", "P two.", "H two.", 0)]


@pytest.mark.parametrize("name, split, classes", [("glue/mnli", "validation_mismatched", 3), ("glue/qqp", "train[:5]", 2)])
def test_load_glue_tfds_on_random_mock_data(name, split, classes):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        examples = glue.load_glue_tfds(name, split)
    assert len(examples) == 6
    assert all(isinstance(e.text_a, str) and isinstance(e.text_b, str) for e in examples)
    assert all(0 <= e.label < classes for e in examples)


def test_bad_tfds_records_are_named_or_skipped(caplog):
    """A blank or non-UTF-8 text, or a label outside the classes (GLUE's test records hold -1), is a
    DataError naming the data set, split and record; under skip_bad_records it is logged and left out."""
    import tensorflow_datasets as tfds

    records = {"premise": ["P one.", " \u3000", "P three.", "P four.", "P five."],
               "hypothesis": [b"H one.", b"H two.", b"H three.", b"H \xff", b"H five."],
               "label": [2, 0, -1, 1, 1], "idx": [0, 1, 2, 3, 4]}
    with tfds.testing.mock_data(as_dataset_fn=_fake_records(records)):
        with pytest.raises(DataError) as caught:
            glue.load_glue_tfds("glue/mnli", "train")
        assert str(caught.value) == "tfds:glue/mnli/train: record train-1: text_a is empty or only whitespace"
        with caplog.at_level(logging.WARNING, logger="road_tf.data.examples"):
            examples = glue.load_glue_tfds("glue/mnli", "train", skip_bad_records=True)
    assert [e.guid for e in examples] == ["train-0", "train-4"]
    warnings = [record.getMessage() for record in caplog.records if record.name == "road_tf.data.examples"]
    assert "record train-1: text_a is empty" in warnings[0]
    assert "record train-2: label -1 is not a class id in [0, 3)" in warnings[1]
    assert "record train-3: a text is not valid UTF-8 (invalid start byte at byte 2)" in warnings[2]
    assert warnings[-1] == "tfds:glue/mnli/train: skipped 3 bad record(s), kept 2"


def test_load_glue_tfds_rejects_unknown_names_and_splits():
    with pytest.raises(ConfigError, match="unknown GLUE TFDS data set 'glue/cola'"):
        glue.load_glue_tfds("glue/cola", "train")
    with pytest.raises(ConfigError, match="glue/mnli has no labelled split 'test_matched'"):
        glue.load_glue_tfds("glue/mnli", "test_matched")


def test_a_line_beyond_the_length_limit_is_refused_without_reading_it_all(tmp_path, monkeypatch, mnli_lines):
    """A gzip file of one endless line (a gzip bomb) stops at the limit, naming the line."""
    monkeypatch.setattr(tsv, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "train.tsv.gz"
    path.write_bytes(gzip.compress((mnli_lines[0] + "\n").encode() + b"x" * 100_000))
    with pytest.raises(DataError, match=r"train.tsv.gz: record line 2: longer than 1,000 bytes"):
        glue.read_mnli_tsv(path)
