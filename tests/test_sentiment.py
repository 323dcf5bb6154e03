"""Sentiment TSV reader (SST-2 layout) on made-up and real files, and the TFDS loaders on mocked
data."""

import gzip
import hashlib
import pathlib

import pytest
import tensorflow_datasets as tfds

from road_tf.data import sentiment
from road_tf.data.examples import ClassificationExample
from road_tf.errors import ConfigError, DataError

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SST2_DEV = SHARED / "data" / "sst2-dev" / "sst2-dev-public.tsv.gz"


def _write(path, text, compress=False):
    payload = text.encode("utf-8")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def test_reads_with_and_without_header_keeping_trailing_spaces(tmp_path):
    body = 'it \'s a "charming" journey . \t1\nhardly great .\t0\n'
    expected = [ClassificationExample("line-2", 'it \'s a "charming" journey . ', None, 1),
                ClassificationExample("line-3", "hardly great .", None, 0)]
    assert sentiment.read_sentiment_tsv(_write(tmp_path / "a.tsv", "sentence\tlabel\n" + body)) == expected
    assert sentiment.read_sentiment_tsv(_write(tmp_path / "b.tsv.gz", "sentence\tlabel\n" + body, True)) == expected
    headless = sentiment.read_sentiment_tsv(_write(tmp_path / "c.tsv", body))
    assert [(e.guid, e.text_a, e.label) for e in headless] == [("line-1", expected[0].text_a, 1),
                                                              ("line-2", expected[1].text_a, 0)]


@pytest.mark.parametrize("line, problem", [
    ("good movie\t2", "unknown label '2'; expected one of '0', '1'"),
    ("good movie\tpositive", "unknown label 'positive'"),
    ("good movie", "expected 2 tab-separated fields, found 1"),
    ("good\tmovie\t1", "expected 2 tab-separated fields, found 3"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, problem):
    path = _write(tmp_path / "dev.tsv", f"sentence\tlabel\nfine .\t1\n{line}\n")
    with pytest.raises(DataError) as caught:
        sentiment.read_sentiment_tsv(path)
    assert (caught.value.path, caught.value.record) == (str(path), "line 3")
    assert problem in caught.value.problem


def test_non_utf8_and_truncated_gzip(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(b"sentence\tlabel\nok .\t1\nna\xefve .\t0\n")
    with pytest.raises(DataError, match=r"dev.tsv: record line 3: not valid UTF-8: byte 0xef at column 3"):
        sentiment.read_sentiment_tsv(path)
    assert len(sentiment.read_sentiment_tsv(path, skip_bad_records=True)) == 1

    whole = gzip.compress("".join(f"sentence number {i} .\t{i % 2}\n" for i in range(3000)).encode())
    truncated = tmp_path / "train.tsv.gz"
    truncated.write_bytes(whole[:-40])
    with pytest.raises(DataError, match=r"train.tsv.gz: record line \d+: corrupt or truncated gzip data"):
        sentiment.read_sentiment_tsv(truncated)


def test_real_sst2_dev_public_half():
    if not SST2_DEV.is_file():
        pytest.skip(f"the shared SST-2 dev file is absent: {SST2_DEV}")
    # Counts and checksum from shared/data/sst2-dev/README.md.
    assert hashlib.sha256(gzip.decompress(SST2_DEV.read_bytes())).hexdigest() == (
        "1a75ffa1ba1bf915814efd9ef68839df96a2e9d35408150af503303233ca2323")
    examples = sentiment.read_sentiment_tsv(SST2_DEV)
    assert len(examples) == 463
    assert sum(e.label for e in examples) == 239
    assert len({e.text_a for e in examples}) == 463
    assert examples[0].text_a == "it 's a charming and often affecting journey . "
    assert examples[0].label == 1 and examples[0].text_b is None



def _fake_records(records):
    """An `as_dataset_fn` for tfds.testing.mock_data that yields exactly `records` (dicts of lists)."""
    import tensorflow as tf

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(records)

    return as_dataset


class AmazonPolarityLike(tfds.core.GeneratorBasedBuilder):
    """A local stand-in with the features of Hugging Face's amazon_polarity (title, content, label)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "title": tfds.features.Text(), "content": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=["negative", "positive"])}))

    def _split_generators(self, dl_manager):
        raise NotImplementedError("only used under tfds.testing.mock_data")

    def _generate_examples(self):
        raise NotImplementedError("only used under tfds.testing.mock_data")


def test_amazon_polarity_joins_title_and_content(monkeypatch):
    _, texts_of, splits = sentiment.TFDS_SOURCES["amazon_polarity"]
    assert sentiment.TFDS_SOURCES["amazon_polarity"][0] == "huggingface:amazon_polarity"
    monkeypatch.setitem(sentiment.TFDS_SOURCES, "amazon_polarity", ("amazon_polarity_like", texts_of, splits))
    records = {"title": ["Great kettle", "Broke!", ""], "content": ["Boils fast.", "After a week.", "Meh."],
               "label": [1, 0, 0]}
    with tfds.testing.mock_data(as_dataset_fn=_fake_records(records)):
        examples = sentiment.load_sentiment_tfds("amazon_polarity", "test")
    assert [(e.text_a, e.label) for e in examples] == [
        ("Great kettle. Boils fast.", 1), ("Broke! After a week.", 0), ("Meh.", 0)]
    with tfds.testing.mock_data(num_examples=4):
        assert len(sentiment.load_sentiment_tfds("amazon_polarity", "train")) == 4


@pytest.mark.parametrize("name, split", [("glue/sst2", "validation"), ("yelp_polarity_reviews", "train[:3]")])
def test_tfds_sentiment_sources_on_random_mock_data(name, split):
    with tfds.testing.mock_data(num_examples=5):
        examples = sentiment.load_sentiment_tfds(name, split)
    assert len(examples) == 5
    assert all(isinstance(e.text_a, str) and e.text_b is None and e.label in (0, 1) for e in examples)


def test_sst2_feature_mapping():
    records = {"sentence": ["a fine film . "], "label": [1], "idx": [7]}
    with tfds.testing.mock_data(as_dataset_fn=_fake_records(records)):
        assert sentiment.load_sentiment_tfds("glue/sst2", "validation") == [
            ClassificationExample("validation-0", "a fine film . ", None, 1)]


def test_unknown_source_or_split():
    with pytest.raises(ConfigError, match="unknown TFDS sentiment data set 'imdb'"):
        sentiment.load_sentiment_tfds("imdb", "train")
    with pytest.raises(ConfigError, match="glue/sst2 has no labelled split 'test'"):
        sentiment.load_sentiment_tfds("glue/sst2", "test")
