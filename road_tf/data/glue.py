"""GLUE sentence-pair tasks (MNLI, QQP): local TSV files in the GLUE release layout, or TFDS.

Label ids follow TFDS `glue/*` (`tensorflow_datasets/text/glue.py`): MNLI entailment=0,
neutral=1, contradiction=2; QQP not_duplicate=0, duplicate=1; SST-2 (`road_tf.data.sentiment`)
negative=0, positive=1.
"""

from road_tf.data.examples import ClassificationExample, parse_all
from road_tf.data.tsv import label_index, read_table, text_field
from road_tf.errors import ONLY_WHITESPACE, ConfigError, DataError

MNLI_LABELS = ("entailment", "neutral", "contradiction")
QQP_LABELS = ("not_duplicate", "duplicate")
SST2_LABELS = ("negative", "positive")

# TFDS name -> (text features for text_a, text_b; labelled splits; class names in id order).
_TFDS_TASKS = {
    "glue/mnli": (("premise", "hypothesis"), ("train", "validation_matched", "validation_mismatched"), MNLI_LABELS),
    "glue/qqp": (("question1", "question2"), ("train", "validation"), QQP_LABELS),
}


def read_mnli_tsv(path, skip_bad_records=False):
    """Reads a GLUE MNLI file (train.tsv, dev_matched.tsv, ...; `.tsv` or `.tsv.gz`).

    Columns used (by header name): `sentence1` (premise) -> text_a, `sentence2` (hypothesis) ->
    text_b, `gold_label` -> label (see MNLI_LABELS), `pairID` -> guid (unique). Other columns
    (parses, label1..label5) are ignored. Blank sentences and ids are errors.

    Returns:
        list of ClassificationExample.
    Raises:
        DataError: naming the file, the line and the problem (field count, missing column,
            unknown label, non-UTF-8 bytes, corrupt gzip).
    """

    def parse(record, number):
        label = label_index(path, number, "gold_label", record["gold_label"], MNLI_LABELS)
        return ClassificationExample(record["pairID"], text_field(path, number, "sentence1", record["sentence1"]),
                                     text_field(path, number, "sentence2", record["sentence2"]), label)

    return read_table(path, parse, ("pairID", "sentence1", "sentence2", "gold_label"), skip_bad_records,
                      id_column="pairID")


def read_qqp_tsv(path, skip_bad_records=False):
    """Reads a GLUE QQP file (train.tsv, dev.tsv; `.tsv` or `.tsv.gz`).

    Columns used: `id` -> guid (unique), `question1` -> text_a, `question2` -> text_b, `is_duplicate`
    ("0" not duplicate, "1" duplicate) -> label. Blank questions and ids are errors.

    Returns:
        list of ClassificationExample.
    Raises:
        DataError: as `read_mnli_tsv`.
    """

    def parse(record, number):
        label = label_index(path, number, "is_duplicate", record["is_duplicate"], ("0", "1"))
        return ClassificationExample(record["id"], text_field(path, number, "question1", record["question1"]),
                                     text_field(path, number, "question2", record["question2"]), label)

    return read_table(path, parse, ("id", "question1", "question2", "is_duplicate"), skip_bad_records,
                      id_column="id")


def load_glue_tfds(name, split, skip_bad_records=False):
    """Loads a labelled split of `glue/mnli` or `glue/qqp` from TFDS.

    `split` is a split name (mnli: train, validation_matched, validation_mismatched; qqp: train,
    validation), optionally sliced ("train[:1000]"). Uses `tfds.load`, which downloads and prepares
    the data set on first use. Records are checked as `load_tfds_examples` says.

    Returns:
        list of ClassificationExample.
    Raises:
        ConfigError: unknown name or split. DataError: a bad record (without `skip_bad_records`).
    """
    if name not in _TFDS_TASKS:
        raise ConfigError(f"unknown GLUE TFDS data set {name!r}; known: {', '.join(_TFDS_TASKS)}")
    (first, second), splits, labels = _TFDS_TASKS[name]
    check_split(name, split, splits)
    return load_tfds_examples(name, split, lambda record: (record[first], record[second]), len(labels),
                              skip_bad_records)


def check_split(name, split, splits):
    """Checks that `split` (maybe sliced, "train[:10%]") names one of `splits`; else ConfigError."""
    base_split = split.split("[", 1)[0]
    if base_split not in splits:
        raise ConfigError(f"{name} has no labelled split {base_split!r}; known: {', '.join(splits)}")


def load_tfds_examples(tfds_name, split, texts_of, num_labels, skip_bad_records=False):
    """Loads a TFDS split whose records carry an integer `label` as ClassificationExample.

    A record is bad (DataError naming `tfds:NAME/SPLIT` and the record's guid) when a text is not UTF-8,
    empty or only white space, or its label is not in [0, num_labels) (GLUE's unlabelled test
    records hold -1); under `skip_bad_records` it is logged and left out (`parse_all`).

    Args:
        tfds_name: the name given to `tfds.load` (which downloads and prepares on first use, into
            $TFDS_DATA_DIR, else ~/tensorflow_datasets).
        split: a TFDS split string.
        texts_of: `texts_of(record) -> (text_a, text_b or None)` for one NumPy record, as UTF-8 bytes
            or str (decoding in it may raise UnicodeDecodeError).
        num_labels: the number of classes.
    Returns:
        list of ClassificationExample; guid is `f"{split}-{n}"`, n counting records from 0.
    """
    import tensorflow_datasets as tfds  # Imported here: it pulls in TensorFlow.

    source = f"tfds:{tfds_name}/{split}"
    dataset = tfds.load(tfds_name, split=split, shuffle_files=False)

    def parse(numbered):
        index, record = numbered
        guid = f"{split}-{index}"
        try:
            texts = [text.decode("utf-8") if isinstance(text, bytes) else text
                     for text in texts_of(record) if text is not None]
        except UnicodeDecodeError as error:
            raise DataError(source, f"a text is not valid UTF-8 ({error.reason} at byte {error.start})",
                            guid) from None
        for name, text in zip(("text_a", "text_b"), texts):
            if not text.strip():
                raise DataError(source, f"{name} is {ONLY_WHITESPACE}", guid)
        label = int(record["label"])
        if not 0 <= label < num_labels:
            raise DataError(source, f"label {label} is not a class id in [0, {num_labels})", guid)
        return ClassificationExample(guid, texts[0], texts[1] if len(texts) > 1 else None, label)

    return parse_all(enumerate(tfds.as_numpy(dataset)), parse, source, skip_bad_records)
