"""Where a task's examples come from (synthetic corpus, local files, TFDS) and their cached features.

Reading needs no TensorFlow, so a command can check its data files before it loads TensorFlow.
"""

import hashlib
import importlib
import json
import logging
import pathlib
import socket

from road_tf.data import synthetic, unanswerable
from road_tf.data.examples import parse_all
from road_tf.data.json_files import parse_json, read_text
from road_tf.data.squad import document_questions, split_for_training
from road_tf.errors import NO_TOKEN, ConfigError, DataError, first_line
from road_tf.files import write_atomic
from road_tf.registry import SPAN

CACHE_ROOT = pathlib.Path("runs") / "cache"
# Where TFDS downloads from; one short connection attempt tells whether it can.
TFDS_HOST = ("storage.googleapis.com", 443)
TFDS_TIMEOUT_SECONDS = 5.0
TOKEN_CHECK_BATCH = 1024
"""Texts a time that `with_tokens` tokenizes."""


def cache_root(data_config):
    """The folder that holds the synthetic corpus and feature caches."""
    return pathlib.Path(data_config.cache_dir) if data_config.cache_dir else CACHE_ROOT


def synthetic_corpus(data_config):
    """Generates (or reuses) the synthetic corpus for `data.synthetic_seed`; returns its paths."""
    folder = cache_root(data_config) / f"synthetic-{data_config.synthetic_seed}"
    return synthetic.generate(folder, seed=data_config.synthetic_seed, train_size=data_config.synthetic_train_size,
                              dev_size=data_config.synthetic_dev_size)


def resolve(reference):
    """Imports "module:function"."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)


def check_tfds_available(name, chosen_by="data.source=tfds", instead="data.source=json with local files",
                         timeout=TFDS_TIMEOUT_SECONDS):
    """ConfigError (after one short attempt) when TFDS data set `name` is neither prepared here nor
    downloadable; the message names the setting that chose TFDS (`chosen_by`) and what to use `instead`."""
    import tensorflow_datasets as tfds  # Imported here: it pulls in TensorFlow.

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # TFDS warns of each data folder it finds empty; the error says enough
    try:
        if tfds.builder(name).is_prepared():
            return
    except Exception as error:  # TFDS raises many kinds for unknown names and unreadable folders
        raise ConfigError(f"data.tfds_name: TFDS cannot open {name!r} ({type(error).__name__}: "
                          f"{first_line(error)})") from None
    finally:
        absl_logger.setLevel(level)
    try:
        socket.create_connection(TFDS_HOST, timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"{chosen_by}: {name} is not downloaded here and {TFDS_HOST[0]} is unreachable "
                          f"({error}); no network: use {instead}") from None


def local_split_paths(data_config):
    """(train path, dev path) of local SQuAD files.

    With `data.split_dev_questions` = N > 0, both come from `data.train_path`, split by article
    (`split_by_article`: articles in order of sha256(title), dev until it holds N questions), and
    are written once under the cache folder, named by a hash of its text, after every question of
    the file is checked (`checked_questions`). DataError (naming the file and the question) when it
    cannot be read, is malformed or no article is left to train on.
    """
    if not data_config.split_dev_questions:
        return data_config.train_path, data_config.dev_path
    source = data_config.train_path
    text = read_text(source)
    digest = hashlib.sha256(text.encode("utf-8") + str(data_config.split_dev_questions).encode()).hexdigest()[:12]
    folder = cache_root(data_config) / f"split-{digest}"
    paths = folder / "train.json", folder / "dev.json"
    if not all(path.is_file() for path in paths):
        write_split(parse_json(text, source), source, data_config.split_dev_questions, paths, data_config,
                    "data.split_dev_questions", "give data.dev_path with data.split_dev_questions=0")
    return tuple(str(path) for path in paths)


def write_split(document, source, min_dev_questions, paths, data_config, setting, alternative):
    """Checks every question of the SQuAD `document` read from `source` (`checked_questions`), splits it
    by article (`split_for_training`, which names `setting` and the `alternative` when nothing is left
    to train on) and writes the (train, dev) halves to the two `paths` as JSON; returns the halves."""
    checked_questions(document, source, data_config)
    halves = split_for_training(document, min_dev_questions, source, setting, alternative)
    for path, half in zip(paths, halves):
        write_atomic(path, json.dumps(half))
    return halves


def _read_local(task, path, data_config):
    return resolve(task.reader)(path, skip_bad_records=data_config.skip_bad_records)


def _identifying_text(example):
    """The text that tells an example apart: a question TAB its context, text_a, or text_a TAB text_b."""
    if hasattr(example, "context"):
        return f"{example.question}\t{example.context}"
    return example.text_a if example.text_b is None else f"{example.text_a}\t{example.text_b}"


def split_by_text_hash(examples, dev_size, path):
    """(train, dev): the `dev_size` examples first in order of sha256(identifying text) are dev, and
    so are the other copies of the last one's text (copies of one text never straddle the split).

    Each split keeps the file order. Raises DataError (naming `path`) unless at least one example is
    left to train on.
    """
    if dev_size >= len(examples):
        raise DataError(path, f"holds {len(examples)} examples; taking {dev_size} for dev leaves none to train on")
    keys = [hashlib.sha256(_identifying_text(example).encode("utf-8")).digest() for example in examples]
    order = sorted(range(len(examples)), key=keys.__getitem__)
    cut = dev_size
    while cut < len(order) and keys[order[cut]] == keys[order[cut - 1]]:
        cut += 1
    if cut == len(order):
        raise DataError(path, f"holds {len(examples)} examples, all copies of the dev split's texts; none is left to "
                              "train on")
    dev = set(order[:cut])
    return ([example for i, example in enumerate(examples) if i not in dev],
            [example for i, example in enumerate(examples) if i in dev])


def read_task_files(task, task_files, data_config, split):
    """(examples, path read) of one split of a task from its `multitask.task_files` entry."""
    if not task_files.split_dev:
        path = task_files.train_path if split == "train" else task_files.dev_path
        return _read_local(task, path, data_config), path
    path = task_files.train_path
    train, dev = split_by_text_hash(_read_local(task, path, data_config), task_files.split_dev, path)
    return (train if split == "train" else dev), path


def load_split(task, data_config, split, is_main_task=True, task_files=None, tokenizer=None):
    """Examples of one split ("train" or "dev") of a task.

    Args:
        task: the task's `road_tf.registry.TaskSpec`.
        is_main_task: whether it is the run's main task (`config.task`); the other tasks of a
            multi-task stage read the synthetic corpus or TFDS when `data.source` is json, and
            only the main task reads `data.tfds_name`, except tasks made from the main task's
            documents (`TaskSpec.reads_main_files`), which read the main task's files or data set.
        task_files: the task's `road_tf.config.TaskFiles` (`multitask.task_files`), or None; when
            given, the split is read from those files whatever `data.source` says.
        tokenizer: a `WordPieceTokenizer`, or None; given, the questions of a span task read as
            they are (not made from other documents, like cloze questions) are checked with it
            (`with_tokens`).

    Returns:
        The split's examples (QAExample or ClassificationExample).
    """
    source = data_config.source
    if task_files is not None:
        source = "task_files"
    elif source == "json" and not (is_main_task or task.reads_main_files):
        source = "synthetic" if task.synthetic else "tfds"
    if task.synthetic is None and source == "synthetic":
        raise ConfigError(f"task {task.name!r} has no synthetic data; set data.source to json or tfds")
    if source == "task_files":
        examples, path = read_task_files(task, task_files, data_config, split)
    elif source == "synthetic":
        path = synthetic_corpus(data_config)[task.synthetic][split]
        examples = _read_local(task, path, data_config)
    elif source == "json":
        path = local_split_paths(data_config)[0 if split == "train" else 1]
        if not path:
            raise ConfigError(f"data.{split}_path: required to read the {split} split from local files")
        examples = _read_local(task, path, data_config)
    else:
        if task.tfds_loader is None:
            raise ConfigError(f"task {task.name!r} has no TFDS source")
        name = (data_config.tfds_name if is_main_task or task.reads_main_files else "") or task.tfds_name
        check_tfds_available(name)
        tfds_split = task.tfds_splits[0 if split == "train" else 1]
        examples = resolve(task.tfds_loader)(name=name, split=tfds_split, skip_bad_records=data_config.skip_bad_records)
        path = f"tfds:{name}/{tfds_split}"
    if split == "train" and is_main_task and task.kind == SPAN and data_config.unanswerable_share:
        examples = unanswerable.with_unanswerable(examples, data_config.unanswerable_share)
    limit = data_config.max_train_examples if split == "train" else data_config.max_eval_examples
    if limit:
        examples = examples[:limit]
    examples = within_length_limit(examples, path, data_config)
    if tokenizer is not None and task.kind == SPAN and not task.reads_main_files:
        examples = with_tokens(examples, path, tokenizer, data_config.skip_bad_records)
    if not examples:
        raise DataError(path, f"holds no usable {split} examples for task {task.name!r}")
    logging.info("%s/%s: %d examples from %s", task.name, split, len(examples), source)
    return examples


def _text_bytes(example):
    """(record id, UTF-8 bytes of its longest text: a question or its context, else text_a or text_b).
    An exported QA model refuses a question or context above data.max_context_bytes too."""
    if hasattr(example, "context"):
        return example.qid, max(len(example.question.encode("utf-8")), len(example.context.encode("utf-8")))
    return example.guid, max(len(example.text_a.encode("utf-8")), len((example.text_b or "").encode("utf-8")))


def checked_questions(document, path, data_config):
    """The questions (list of QAExample) of the SQuAD `document` parsed from `path`, checked as a run
    checks them: DataError naming `path` and the question for a malformed record or a text above
    data.max_context_bytes (each dropped with a warning instead under data.skip_bad_records)."""
    return within_length_limit(document_questions(document, path, data_config.skip_bad_records), path, data_config)


def within_length_limit(examples, path, data_config):
    """`examples` whose texts fit in `data.max_context_bytes`; a longer one raises DataError, or is
    logged and dropped with `data.skip_bad_records`."""
    limit = data_config.max_context_bytes

    def within(example):
        record, size = _text_bytes(example)
        if size > limit:
            raise DataError(path, f"text of {size} bytes is longer than data.max_context_bytes ({limit})", record)
        return example

    return parse_all(examples, within, path, data_config.skip_bad_records)


def with_tokens(examples, path, tokenizer, skip_bad_records):
    """The QAExamples of `examples` (read from `path`) whose question and context each give
    `tokenizer` a token; another raises DataError naming `path` and the question (with
    `skip_bad_records`, it is logged and left out). The exported model refuses such a text
    (NO_TOKEN), so a run neither trains on it nor scores it as "no answer". Each distinct text is
    tokenized once, TOKEN_CHECK_BATCH at a time."""
    texts = list(dict.fromkeys(text for example in examples for text in (example.question, example.context)))
    tokens = {}
    for begin in range(0, len(texts), TOKEN_CHECK_BATCH):
        batch = texts[begin:begin + TOKEN_CHECK_BATCH]
        tokens.update(zip(batch, tokenizer.tokenize(batch).row_lengths().numpy().tolist()))

    def readable(example):
        for name, text in (("question", example.question), ("context", example.context)):
            if not tokens[text]:
                raise DataError(path, f"{name} {NO_TOKEN}", example.qid)
        return example

    return parse_all(examples, readable, path, skip_bad_records, what="question")


def cached_features(task_name, split, examples, tokenizer, data_config, build):
    """`build()`'s features of `examples`, cached as TFRecords keyed by the examples, the tokenizer
    and the sequence lengths (`road_tf.data.features.cache_key`)."""
    from road_tf.data import features as feats  # Imported here: it pulls in TensorFlow.

    key = feats.cache_key(examples, tokenizer, task=task_name, split=split,
                          max_seq_length=data_config.max_seq_length,
                          max_query_length=data_config.max_query_length, doc_stride=data_config.doc_stride)
    return feats.cached(cache_root(data_config) / "features" / f"{task_name}-{split}-{key}.tfrecord", build)
