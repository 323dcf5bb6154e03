"""Binary sentiment (0 negative, 1 positive): `sentence<TAB>label` TSV files, or TFDS.

The TSV layout is GLUE SST-2's (train.tsv, dev.tsv): a header `sentence<TAB>label` that may be
left out, then one sentence per line; the sentence is kept as is (SST-2 keeps trailing spaces).
The class names are `road_tf.data.glue.SST2_LABELS`.
"""

from road_tf.data.examples import ClassificationExample
from road_tf.data.glue import check_split, load_tfds_examples
from road_tf.data.tsv import label_index, read_table, text_field
from road_tf.errors import ConfigError


def _sentence(record):
    return record["sentence"].decode("utf-8"), None


def _title_and_content(record):
    """amazon_polarity's text: "title. content" (no extra period when the title already ends a
    sentence), or the content alone when the title is empty."""
    title = record["title"].decode("utf-8").strip()
    content = record["content"].decode("utf-8")
    if not title:
        return content, None
    return (f"{title} {content}" if title[-1] in ".!?" else f"{title}. {content}"), None


def _text(record):
    return record["text"].decode("utf-8"), None


# Name accepted here -> (TFDS name, record -> texts, labelled splits). Every one of them stores the
# label as a ClassLabel whose id 0 is negative and 1 positive: glue/sst2 ("negative", "positive"),
# amazon_polarity (Hugging Face features title, content, label ("negative", "positive"); TFDS 4.9
# has no builder of its own, so it goes through the `huggingface:` community namespace, which
# needs the `datasets` package and network access), yelp_polarity_reviews (text, label ("1", "2")).
TFDS_SOURCES = {
    "glue/sst2": ("glue/sst2", _sentence, ("train", "validation")),
    "amazon_polarity": ("huggingface:amazon_polarity", _title_and_content, ("train", "test")),
    "yelp_polarity_reviews": ("yelp_polarity_reviews", _text, ("train", "test")),
}


def read_sentiment_tsv(path, skip_bad_records=False):
    """Reads a `sentence<TAB>label` file (`.tsv` or `.tsv.gz`; header optional; labels 0/1; a blank
    sentence is an error).

    Returns:
        list of ClassificationExample (text_b None, guid `f"line-{n}"`).
    Raises:
        DataError: naming the file, the line and the problem (field count, label, non-UTF-8
            bytes, corrupt gzip).
    """

    def parse(record, number):
        label = label_index(path, number, "label", record["label"], ("0", "1"))
        return ClassificationExample(f"line-{number}", text_field(path, number, "sentence", record["sentence"]), None, label)

    return read_table(path, parse, ("sentence", "label"), skip_bad_records, optional_header=True)


def load_sentiment_tfds(name, split, skip_bad_records=False):
    """Loads a labelled split of a TFDS sentiment data set (a TFDS_SOURCES key) as examples.

    Uses `tfds.load`, which downloads and prepares the data set on first use. Records are checked
    as `load_tfds_examples` says.

    Returns:
        list of ClassificationExample (text_b None, label 0 negative / 1 positive).
    Raises:
        ConfigError: unknown name or split. DataError: a bad record (without `skip_bad_records`).
    """
    if name not in TFDS_SOURCES:
        raise ConfigError(f"unknown TFDS sentiment data set {name!r}; known: {', '.join(TFDS_SOURCES)}")
    tfds_name, texts_of, splits = TFDS_SOURCES[name]
    check_split(name, split, splits)
    return load_tfds_examples(tfds_name, split, texts_of, 2, skip_bad_records)
