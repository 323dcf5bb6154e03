"""Writes a QA model as a raw-text SavedModel version for TF Serving.

Layout: `<base>/<name>/<version>/` with `saved_model.pb`, `variables/`, `assets/`,
`assets.extra/tf_serving_warmup_requests`, `road_tf_metrics.json` (the dev metrics of the
model, so a served folder only holds versions whose quality is on record) and, for a version
exported from a finished run, `road_tf_source.json` (that run's directory). The version is built in
a temporary sibling folder (`.tmp-...`, never an integer name, so TF Serving ignores it) and
renamed into place. The graph is `QAAnswerer`'s: the decoder evaluation ran.
"""

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the signature uses)

from road_tf.data.features import MODEL_INPUTS, qa_windows
from road_tf.errors import RoadError
from road_tf.files import newest_version, next_version
from road_tf.models.span_logits import EVAL_DTYPE
from road_tf.training import check_finite_weights

# TF Text ops that TF Serving 2.16 links in (it bundles TF Text 2.12.1 kernels).
SERVING_TF_TEXT_OPS = frozenset({
    "FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "FastWordpieceDetokenize",
    "WordpieceTokenizeWithOffsets", "CaseFoldUTF8", "NormalizeUTF8", "NormalizeUTF8WithOffsetsMap",
    "RegexSplitWithOffsets", "WhitespaceTokenizeWithOffsetsV2",
})
FORBIDDEN_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
WARMUP_EXAMPLES = (
    ("Where is the river?", "The long river flows through the old city of Avenport."),
    ("Who founded the company?", "Nobody recorded the founding of this company."),
)
METRICS_FILE = "road_tf_metrics.json"
SOURCE_FILE = "road_tf_source.json"


def newest_is_from(model_dir, run_dir):
    """Whether the newest version of `model_dir` records (SOURCE_FILE) that it was exported from
    `run_dir`; False when there is no version or it records no run."""
    newest = newest_version(model_dir)
    if newest is None:
        return False
    try:
        return json.loads((newest / SOURCE_FILE).read_text())["run"] == str(pathlib.Path(run_dir).resolve())
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False


def remove_stale_tmp(model_dir, max_age_seconds=3600):
    """Deletes `.tmp-*` folders in `model_dir` older than `max_age_seconds` (left by killed exports)."""
    for path in model_dir.glob(".tmp-*"):
        if time.time() - path.lstat().st_mtime > max_age_seconds:
            logging.warning("removing %s, left by an export that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)


def warmup_batches(config):
    """The (questions, contexts) batches of an export's warm-up requests.

    First one question whose one window fills max_seq_length: the first encoder call fixes the
    layout in which oneDNN caches each matmul's constant weights (`SpanLogits`), and a layout chosen
    for a few rows slows every longer question (MiniLM float32, 16 real questions of 154 tokens on
    average: 31.9 ms each after a short first request, 28.9 after a full window). Then
    WARMUP_EXAMPLES. With `export.jit_compile`, also one batch per window-group size g (1 to
    `export.window_group_size`) and length bucket: g copies of a question whose one window is as
    long as the bucket, so that loading compiles every shape the XLA encoder will see. Every
    context fits in data.max_context_bytes (`context_of_length`): the model answers no longer one.
    """
    export, max_length, max_bytes = config.export, config.data.max_seq_length, config.data.max_context_bytes
    batches = [(["Who?"], [context_of_length(max_length, max_bytes)]),
               ([q for q, _ in WARMUP_EXAMPLES], [c for _, c in WARMUP_EXAMPLES])]
    if export.jit_compile:
        bucket = export.length_bucket
        for top in range(bucket, max_length + bucket, bucket):
            context = context_of_length(min(top, max_length), max_bytes)
            batches += [(["Who?"] * size, [context] * size) for size in range(1, export.window_group_size + 1)]
    return batches


def context_of_length(length, max_bytes):
    """A context whose window after the question "Who?" is `length` tokens ([CLS] who ? [SEP], the
    context, [SEP]), cut to `max_bytes` bytes (data.max_context_bytes, the longest context the model
    answers). It is full stops: one byte and one token each (WordPiece splits punctuation into
    single characters), so it fills the window whenever the limit lets any context do so."""
    return "." * min(max(length - 5, 1), max_bytes)


def warmup_requests(config, tokenizer):
    """[(signature name, {input name: value})] of an export's warm-up requests, in order: one
    serving_default request per batch of `warmup_batches`, and after the first (one full window)
    that window's tokens to serve_token_ids, whose encoder call caches its own weight layout (a
    short first call made its 154-token windows 29.3 instead of 23.0 ms, MiniLM float32)."""
    data, batches = config.data, warmup_batches(config)
    requests = [("serving_default", {"question": questions, "context": contexts}) for questions, contexts in batches]
    windows = qa_windows(tokenizer, tf.constant(batches[0][0]), tf.constant(batches[0][1]), data.max_seq_length,
                         data.max_query_length, data.doc_stride)
    requests.insert(1, ("serve_token_ids", {key: windows[key].numpy() for key in MODEL_INPUTS}))
    return requests


def write_warmup(version_dir, config, tokenizer):
    """Writes `assets.extra/tf_serving_warmup_requests` (PredictionLog TFRecords TF Serving replays at
    load, in order), one request per entry of `warmup_requests`."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    extra = version_dir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for signature, inputs in warmup_requests(config, tokenizer):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def graph_ops(saved_model_dir):
    """Every op type in a SavedModel's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def check_serving_ops(saved_model_dir):
    """Raises RoadError if the graph uses an op outside TF core + the TF Text ops TF Serving links."""
    core = set(dir(tf.raw_ops))
    ops = graph_ops(saved_model_dir)
    bad = sorted(op for op in ops if op in FORBIDDEN_OPS or (op not in core and op not in SERVING_TF_TEXT_OPS))
    if bad:
        raise RoadError(f"{saved_model_dir}: ops TF Serving cannot run: {', '.join(bad)}")
    return ops


def make_world_readable(folder):
    """Folders 0755 and files 0644 under `folder` (itself included), as TF Serving under another user needs."""
    folder = pathlib.Path(folder)
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def save_qa_model(model, task, tokenizer, config, directory, null_score_diff_threshold=None, metrics=None,
                  source=None):
    """Writes the raw-text QA SavedModel (signatures, warm-up requests, metrics) into `directory`.

    Args:
        model: the trained task model; task: its span task (`road_tf.tasks.SpanTask`).
        null_score_diff_threshold: the served threshold (default `decode.null_score_diff_threshold`).
        metrics: dev metrics to record in METRICS_FILE (None: none recorded). Run evaluation
            measures them in float32 (`EVAL_DTYPE`, whatever `train.mixed_precision`); when the
            export runs in another precision (`export.precision`), the file records both
            ("measured_precision", "exported_precision"): its answers may differ in a few questions.
        source: the run directory the model comes from, recorded (absolute) in SOURCE_FILE (None: none).
    """
    answerer = task.answerer(model, tokenizer, config, null_score_diff_threshold, export=True)
    # The tf.functions themselves, not concrete functions traced before saving: save traces them in
    # its own context, and a trace from outside would be one more (seconds each).
    tf.saved_model.save(answerer, str(directory), signatures={
        "serving_default": answerer.answer, "serve_token_ids": answerer.token_logits})
    write_warmup(pathlib.Path(directory), config, tokenizer)
    if metrics is not None:
        if config.export.precision != EVAL_DTYPE:
            metrics = {**metrics, "measured_precision": EVAL_DTYPE, "exported_precision": config.export.precision}
        (pathlib.Path(directory) / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if source is not None:
        (pathlib.Path(directory) / SOURCE_FILE).write_text(json.dumps({"run": str(pathlib.Path(source).resolve())}) + "\n")
    check_serving_ops(directory)


def export_qa_model(model, task, tokenizer, config, null_score_diff_threshold=None, metrics=None, base_dir=None,
                    model_name=None, source=None):
    """Writes `<base>/<name>/<next version>/` atomically (see `save_qa_model`); returns its path.

    A model with NaN or infinite weights, or without a name (`model_name` and `export.model_name`
    empty: the versions would land in the base folder itself), is refused (RoadError); `.tmp-*`
    folders older than an hour, left by killed exports, are removed.
    """
    check_finite_weights(model)
    export = config.export
    model_dir = dataclasses.replace(export, model_name=model_name or export.model_name,
                                    base_dir=base_dir or export.base_dir).model_folder()
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(model_dir)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=model_dir, prefix=".tmp-"))
    try:
        save_qa_model(model, task, tokenizer, config, tmp, null_score_diff_threshold, metrics, source)
        make_world_readable(tmp)
        while True:
            version_dir = model_dir / str(next_version(model_dir))
            try:
                os.rename(tmp, version_dir)
                break
            except OSError:
                if not version_dir.exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logging.info("exported %s", version_dir)
    return version_dir
