"""The pipeline's input: SQuAD 2.0 questions from a named source, written as tf.Example TFRecords.

Sources (`--data`):
  synthetic              the embedded synthetic corpus (seed and sizes from the recipe's data.*)
  tfds                   TFDS `data.tfds_name` (train and validation splits)
  FILE.json[.gz]         one local SQuAD 2.0 file, split by article (`split_by_article`), or,
                         with `--eval-data EVAL.json[.gz]`, the training file and the eval file.

Every question is checked while it is read (`road_tf.data.squad`): a malformed file stops here
with a DataError naming the file, the question and the problem, before any component runs.

The records go to `<examples>/Split-train/data.tfrecord` and `Split-eval/data.tfrecord`, the
layout ImportExampleGen reads. A file is replaced only when its examples change: ImportExampleGen
fingerprints its input files (size and modification time), so an unchanged source keeps the
pipeline's cached components valid.
"""

import json
import os
import pathlib
import tempfile

from road_tf.data.records import read_records, write_records
from road_tf.data.squad import read_json, read_squad_json, split_by_article
from road_tf.files import write_atomic

SPLITS = ("train", "eval")


def load_questions(source, eval_path, data_config, work_dir, min_dev_questions):
    """(train examples, eval examples) of `source` (see the module docstring).

    Args:
        data_config: the recipe's `DataConfig` (synthetic sizes and seed, tfds name, skip_bad_records).
        work_dir: folder for the synthetic corpus and the two halves of a split file.
        min_dev_questions: questions the eval half of a split file must reach.
    Raises:
        DataError: a malformed file or question (named).
    """
    work_dir = pathlib.Path(work_dir)
    skip = data_config.skip_bad_records
    if source == "synthetic":
        from road_tf.data import synthetic

        paths = synthetic.generate(work_dir / "synthetic", seed=data_config.synthetic_seed,
                                   train_size=data_config.synthetic_train_size, dev_size=data_config.synthetic_dev_size)
        return read_squad_json(paths["squad"]["train"]), read_squad_json(paths["squad"]["dev"])
    if source == "tfds":
        from road_tf.data.squad import load_squad_tfds

        return (load_squad_tfds("train", name=data_config.tfds_name, skip_bad_records=skip),
                load_squad_tfds("validation", name=data_config.tfds_name, skip_bad_records=skip))
    if eval_path:
        return read_squad_json(source, skip), read_squad_json(eval_path, skip)
    read_squad_json(source, skip)  # checks every question, naming `source` in any error
    halves = split_by_article(read_json(source), min_dev_questions)
    paths = [work_dir / "split" / f"{split}.json" for split in SPLITS]
    for path, half in zip(paths, halves):
        write_atomic(path, json.dumps(half))
    return tuple(read_squad_json(path, skip) for path in paths)


def write_examples(examples_dir, train, evaluation):
    """Writes the two splits as ImportExampleGen input; returns `examples_dir`.

    A split's file is left alone when it already holds these examples: its bytes can differ from
    a fresh write (protobuf map order), its content cannot.
    """
    examples_dir = pathlib.Path(examples_dir)
    for split, examples in zip(SPLITS, (train, evaluation)):
        target = examples_dir / f"Split-{split}" / "data.tfrecord"
        if target.exists() and read_records([target], compression_type="") == list(examples):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".data.")
        os.close(handle)
        write_records(tmp, examples)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return examples_dir
