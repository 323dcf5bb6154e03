"""GLUE sentence-pair tasks (MNLI, QQP): local TSV files in the GLUE release layout, or TFDS.

Label ids follow TFDS `glue/*` (`tensorflow_datasets/text/glue.py`): MNLI entailment=0,
neutral=1, contradiction=2; QQP not_duplicate=0, duplicate=1; SST-2 negative=0, positive=1.
The class names of each task are in `LABELS`.
"""

from road_tf.data.examples import ClassificationExample
from road_tf.data.tsv import label_index, read_table
from road_tf.errors import ConfigError

MNLI_LABELS = ("entailment", "neutral", "contradiction")
QQP_LABELS = ("not_duplicate", "duplicate")
SST2_LABELS = ("negative", "positive")

# TFDS name -> (text features for text_a[, text_b], labelled splits).
_TFDS_TASKS = {
    "glue/mnli": (("premise", "hypothesis"), ("train", "validation_matched", "validation_mismatched")),
    "glue/qqp": (("question1", "question2"), ("train", "validation")),
    "glue/sst2": (("sentence",), ("train", "validation")),
}


def read_mnli_tsv(path, skip_bad_records=False):
    """Reads a GLUE MNLI file (train.tsv, dev_matched.tsv, ...; `.tsv` or `.tsv.gz`).

    Columns used (by header name): `sentence1` (premise) -> text_a, `sentence2` (hypothesis) ->
    text_b, `gold_label` -> label (see MNLI_LABELS), `pairID` -> guid. Other columns (parses,
    label1..label5) are ignored.

    Returns:
        list of ClassificationExample.
    Raises:
        DataError: naming the file, the line and the problem (field count, missing column,
            unknown label, non-UTF-8 bytes, corrupt gzip).
    """

    def parse(record, number):
        label = label_index(path, number, "gold_label", record["gold_label"], MNLI_LABELS)
        return ClassificationExample(record["pairID"], record["sentence1"], record["sentence2"], label)

    return read_table(path, parse, ("pairID", "sentence1", "sentence2", "gold_label"), skip_bad_records)


def read_qqp_tsv(path, skip_bad_records=False):
    """Reads a GLUE QQP file (train.tsv, dev.tsv; `.tsv` or `.tsv.gz`).

    Columns used: `id` -> guid, `question1` -> text_a, `question2` -> text_b, `is_duplicate`
    ("0" not duplicate, "1" duplicate) -> label.

    Returns:
        list of ClassificationExample.
    Raises:
        DataError: as `read_mnli_tsv`.
    """

    def parse(record, number):
        label = label_index(path, number, "is_duplicate", record["is_duplicate"], ("0", "1"))
        return ClassificationExample(record["id"], record["question1"], record["question2"], label)

    return read_table(path, parse, ("id", "question1", "question2", "is_duplicate"), skip_bad_records)


def load_glue_tfds(name, split, data_dir=None):
    """Loads a labelled split of `glue/mnli`, `glue/qqp` or `glue/sst2` from TFDS.

    `split` is a split name (mnli: train, validation_matched, validation_mismatched; qqp and sst2:
    train, validation), optionally sliced ("train[:1000]"). Uses `tfds.load`, which downloads and
    prepares the data set into `data_dir` on first use. guid is `f"{split}-{n}"` (n counts records).

    Returns:
        list of ClassificationExample, text_b None for sst2.
    Raises:
        ConfigError: unknown name or split.
    """
    if name not in _TFDS_TASKS:
        raise ConfigError(f"unknown GLUE TFDS data set {name!r}; known: {', '.join(_TFDS_TASKS)}")
    features, splits = _TFDS_TASKS[name]
    check_split(name, split, splits)

    def texts_of(record):
        texts = [record[feature].decode("utf-8") for feature in features]
        return texts[0], (texts[1] if len(texts) > 1 else None)

    return load_tfds_examples(name, split, texts_of, data_dir)


def check_split(name, split, splits):
    """Checks that `split` (maybe sliced, "train[:10%]") names one of `splits`; else ConfigError."""
    base_split = split.split("[", 1)[0]
    if base_split not in splits:
        raise ConfigError(f"{name} has no labelled split {base_split!r}; known: {', '.join(splits)}")


def load_tfds_examples(tfds_name, split, texts_of, data_dir=None):
    """Loads a TFDS split whose records carry an integer `label` as ClassificationExample.

    Args:
        tfds_name: the name given to `tfds.load` (which downloads and prepares on first use).
        split: a TFDS split string.
        texts_of: `texts_of(record) -> (text_a, text_b or None)` for one NumPy record.
        data_dir: TFDS data folder, or None for the TFDS default.
    Returns:
        list of ClassificationExample; guid is `f"{split}-{n}"`, n counting records from 0.
    """
    import tensorflow_datasets as tfds  # Imported here: it pulls in TensorFlow.

    dataset = tfds.load(tfds_name, split=split, data_dir=data_dir, shuffle_files=False)
    examples = []
    for index, record in enumerate(tfds.as_numpy(dataset)):
        text_a, text_b = texts_of(record)
        examples.append(ClassificationExample(f"{split}-{index}", text_a, text_b, int(record["label"])))
    return examples


LABELS = {"mnli": MNLI_LABELS, "qqp": QQP_LABELS, "sst2": SST2_LABELS}
