"""Where a task's examples come from (synthetic corpus, local files, TFDS) and their cached features.

Reading needs no TensorFlow, so a command can check its data files before it loads TensorFlow.
"""

import logging
import pathlib

from road_tf.errors import ConfigError, DataError
from road_tf.tasks import resolve

CACHE_ROOT = pathlib.Path("runs") / "cache"


def cache_root(data_config):
    """The folder that holds the synthetic corpus and feature caches."""
    return pathlib.Path(data_config.cache_dir) if data_config.cache_dir else CACHE_ROOT


def synthetic_corpus(data_config):
    """Generates (or reuses) the synthetic corpus for `data.synthetic_seed`; returns its paths."""
    from road_tf.data import synthetic

    folder = cache_root(data_config) / f"synthetic-{data_config.synthetic_seed}"
    return synthetic.generate(folder, seed=data_config.synthetic_seed, train_size=data_config.synthetic_train_size,
                              dev_size=data_config.synthetic_dev_size)


def _read_local(task, path, data_config):
    return resolve(task.reader)(path, skip_bad_records=data_config.skip_bad_records)


def load_split(task, data_config, split, is_main_task=True):
    """Examples of one split ("train" or "dev") of `task`.

    Returns:
        (examples, source_files): source_files are the local files read (for cache keys), or
        () for TFDS.
    """
    source = data_config.source
    if source == "json" and not is_main_task:
        source = "synthetic" if task.synthetic else "tfds"
    if task.synthetic is None and source == "synthetic":
        raise ConfigError(f"task {task.name!r} has no synthetic data; set data.source to json or tfds")
    if source == "synthetic":
        path = synthetic_corpus(data_config)[task.synthetic][split]
        examples = _read_local(task, path, data_config)
        files = (path,)
    elif source == "json":
        path = data_config.train_path if split == "train" else data_config.dev_path
        if not path:
            raise ConfigError(f"data.{split}_path: required to read the {split} split from local files")
        examples = _read_local(task, path, data_config)
        files = (path,)
    else:
        if task.tfds_loader is None:
            raise ConfigError(f"task {task.name!r} has no TFDS source")
        name = data_config.tfds_name if (task.kind == "span" and is_main_task) else task.tfds_name
        tfds_split = task.tfds_splits[0 if split == "train" else 1]
        examples = resolve(task.tfds_loader)(name=name, split=tfds_split)
        files = ()
        path = f"tfds:{name}/{tfds_split}"
    limit = data_config.max_train_examples if split == "train" else data_config.max_eval_examples
    if limit:
        examples = examples[:limit]
    examples = within_length_limit(examples, path, data_config)
    if not examples:
        raise DataError(path, f"holds no usable {split} examples for task {task.name!r}")
    logging.info("%s/%s: %d examples from %s", task.name, split, len(examples), source)
    return examples, files


def _text_bytes(example):
    """(record id, UTF-8 bytes of its longest text: the context of a question, else text_a or text_b)."""
    if hasattr(example, "context"):
        return example.qid, len(example.context.encode("utf-8"))
    return example.guid, max(len(example.text_a.encode("utf-8")), len((example.text_b or "").encode("utf-8")))


def within_length_limit(examples, path, data_config):
    """`examples` whose texts fit in `data.max_context_bytes`; a longer one raises DataError, or is
    logged and dropped with `data.skip_bad_records`."""
    limit, kept = data_config.max_context_bytes, []
    for example in examples:
        record, size = _text_bytes(example)
        if size > limit:
            error = DataError(path, f"text of {size} bytes is longer than data.max_context_bytes ({limit})", record)
            if not data_config.skip_bad_records:
                raise error
            logging.warning("skipping bad record: %s", error)
            continue
        kept.append(example)
    return kept


def featurize(task, examples, files, tokenizer, data_config, split):
    """Features of `examples`, cached as TFRecords keyed by data files, tokenizer and lengths."""
    from road_tf.data import features as feats  # Imported here: it pulls in TensorFlow.

    settings = dict(task=task.name, split=split, n=len(examples), max_seq_length=data_config.max_seq_length,
                    max_query_length=data_config.max_query_length, doc_stride=data_config.doc_stride,
                    source=data_config.source, tfds=data_config.tfds_name if not files else "")

    def build():
        if task.kind == "span":
            return feats.featurize_qa(tokenizer, examples, data_config.max_seq_length, data_config.max_query_length,
                                      data_config.doc_stride)
        return feats.featurize_classification(tokenizer, examples, data_config.max_seq_length)

    key = feats.cache_key(files, tokenizer, **settings)
    return feats.cached(cache_root(data_config) / "features" / f"{task.name}-{split}-{key}.tfrecord", build)
