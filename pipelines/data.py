"""The pipeline's input: SQuAD 2.0 questions from a named source, written as tf.Example TFRecords.

Sources (`--data`):
  synthetic              the embedded synthetic corpus (seed and sizes from the recipe's data.*)
  tfds                   TFDS `data.tfds_name`, squad/v2.0 when empty (train and validation splits;
                         ConfigError at once when it is neither prepared nor downloadable)
  FILE.json[.gz]         one local SQuAD 2.0 file, split by article (`split_for_training`), or,
                         with `--eval-data EVAL.json[.gz]`, the training file and the eval file.

Every question is checked while it is read (`road_tf.data.squad`), and then with the recipe's
tokenizer (a question or context it reads as empty, which the exported model refuses): a malformed
file stops here with a DataError naming the file, the question and the problem, before any
component runs; so does a file whose split holds no questions. Each file is read once, so it may
be a pipe.

The records go to `<examples>/Split-train/data.tfrecord` and `Split-eval/data.tfrecord`, the
layout ImportExampleGen reads. A file is replaced only when its examples change (or it is corrupt):
ImportExampleGen fingerprints its input files (size and modification time), so an unchanged source
keeps the pipeline's cached components valid.
"""

import pathlib

import tensorflow as tf
from google.protobuf.message import DecodeError

from road_tf.data.json_files import read_json
from road_tf.data.records import to_tf_example, write_records
from road_tf.data.sources import check_tfds_available, checked_questions, with_tokens, write_split
from road_tf.data.squad import read_squad_json
from road_tf.data.tokenizer import load_tokenizer
from road_tf.errors import DataError
from road_tf.files import atomic_target, fixed_temp, non_file_kind
from road_tf.registry import task_spec

SPLITS = ("train", "eval")


def load_questions(source, eval_path, data_config, work_dir, min_dev_questions):
    """(train examples, eval examples) of `source` (see the module docstring), each question and
    context giving the recipe's tokenizer a token, as a run requires (`sources.with_tokens`).

    Args:
        data_config: the recipe's `DataConfig` (synthetic sizes and seed, tfds name, skip_bad_records,
            max_context_bytes, vocab).
        work_dir: folder for the synthetic corpus and the two halves of a split file.
        min_dev_questions: questions the eval half of a split file must reach.
    Raises:
        DataError: a malformed file or question, or a file whose split holds no questions (named).
        ConfigError: TFDS cannot open or download the data set (`check_tfds_available`).
    """
    splits, paths = read_splits(source, eval_path, data_config, pathlib.Path(work_dir), min_dev_questions)
    tokenizer = load_tokenizer(data_config.vocab)
    return require_questions(tuple(with_tokens(examples, path, tokenizer, data_config.skip_bad_records)
                                   for examples, path in zip(splits, paths)), paths)


def read_splits(source, eval_path, data_config, work_dir, min_dev_questions):
    """((train examples, eval examples), (the file or data set each was read from)) of `source`."""
    skip = data_config.skip_bad_records
    if source == "synthetic":
        from road_tf.data import synthetic

        paths = synthetic.generate(work_dir / "synthetic", seed=data_config.synthetic_seed,
                                   train_size=data_config.synthetic_train_size, dev_size=data_config.synthetic_dev_size)
        names = (paths["squad"]["train"], paths["squad"]["dev"])
        return tuple(read_squad_json(path) for path in names), names
    if source == "tfds":
        from road_tf.data.squad import load_squad_tfds

        spec = task_spec("squad2")
        name = data_config.tfds_name or spec.tfds_name
        check_tfds_available(name, "--data tfds", "--data FILE.json with a local SQuAD 2.0 file")
        return (tuple(load_squad_tfds(split, name=name, skip_bad_records=skip) for split in spec.tfds_splits),
                tuple(f"tfds:{name}/{split}" for split in spec.tfds_splits))
    if eval_path:
        return (read_questions(source, data_config), read_questions(eval_path, data_config)), (source, eval_path)
    return split_file(source, work_dir / "split", min_dev_questions, data_config), (source, source)


def read_questions(path, data_config):
    """The questions of the SQuAD file `path` (`checked_questions`)."""
    return checked_questions(read_json(path), path, data_config)


def split_file(source, split_dir, min_dev_questions, data_config):
    """(train examples, eval examples) of one SQuAD file split by article (`split_for_training`).

    The file is read once (it may be a pipe) and every question checked, naming `source` in any
    error; the halves are written to `split_dir/{train,eval}.json` and their examples taken from
    the halves in memory.

    Raises:
        DataError: naming `source`, when it is malformed.
    """
    paths = [split_dir / f"{split}.json" for split in SPLITS]
    halves = write_split(read_json(source), source, min_dev_questions, paths, data_config, "--min-dev-questions",
                         "give the eval questions with --eval-data")
    return tuple(checked_questions(half, source, data_config) for half in halves)


def require_questions(splits, paths):
    """`splits` (train examples, eval examples), read from `paths`, after checking that neither is empty.

    Raises:
        DataError: naming the file of an empty split (e.g. `{"data": []}`, or every question skipped).
    """
    for split, examples, path in zip(SPLITS, splits, paths):
        if not examples:
            raise DataError(path, f"holds no usable questions for the {split} split")
    return splits


def write_examples(examples_dir, train, evaluation):
    """Writes the two splits as ImportExampleGen input; returns `examples_dir`.

    A split's file is left alone when it already holds these examples (`holds_examples`), and
    rewritten otherwise, also when it is corrupt.

    Raises:
        DataError: naming a split's file, when a folder, device or pipe stands in its place.
    """
    examples_dir = pathlib.Path(examples_dir)
    for split, examples in zip(SPLITS, (train, evaluation)):
        target = examples_dir / f"Split-{split}" / "data.tfrecord"
        kind = non_file_kind(target)
        if kind:
            raise DataError(target, f"{kind}, not an examples file; remove it or use a fresh --root")
        leftover = fixed_temp(target)  # a killed write's: ImportExampleGen reads every file of Split-*
        kind = non_file_kind(leftover)
        if kind:
            raise DataError(leftover, f"{kind} where the examples are written first; remove it or use a fresh --root")
        leftover.unlink(missing_ok=True)
        if target.exists() and holds_examples(target, examples):
            continue
        with atomic_target(target, fixed=True) as tmp:
            write_records(tmp, examples)
    return examples_dir


def holds_examples(path, examples):
    """Whether the TFRecord file `path` holds exactly `examples`, compared as tf.Examples (its bytes
    can differ from a fresh write: protobuf map order); False when it is corrupt or holds other records."""
    try:
        stored = [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(path))]
    except (tf.errors.DataLossError, DecodeError):
        return False
    return stored == [to_tf_example(example) for example in examples]
