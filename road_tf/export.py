"""Exports a QA student as a raw-text SavedModel version for TF Serving.

`python -m road_tf.export --run-dir RUN --model-name NAME [--base saved_models]` exports the
student of a finished run; every training run also calls `export_qa_model` at its end.

Layout: `<base>/<name>/<version>/` with `saved_model.pb`, `variables/`, `assets/` and
`assets.extra/tf_serving_warmup_requests`. The version is built in a temporary sibling folder
(`.tmp-...`, never an integer name, so TF Serving ignores it) and renamed into place.
"""

import argparse
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the signature uses)

from road_tf.data.features import MODEL_INPUTS, PADDING_MASK, SEGMENT_IDS, TOKEN_IDS, qa_windows
from road_tf.errors import RoadError, cli_main
from road_tf.models.task_model import logit_keys
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


def decode_best_spans(start_logits, end_logits, byte_offsets, example_index, num_examples, contexts,
                      max_answer_length, null_score_diff_threshold):
    """Best answer per question across its windows, in TF ops.

    Args:
        start_logits, end_logits: float32 [W, S].
        byte_offsets: int32 [W, S, 2] (-1 outside the context); example_index: int32 [W].
        contexts: tf.string [B] with B = num_examples.
    Returns:
        dict of [B] tensors: answer (exact substring, "" for no answer), score (best span score),
        no_answer_probability (sigmoid(null - best span score)), start_char, end_char (characters,
        -1 for no answer).
    """
    in_context = byte_offsets[..., 0] >= 0
    very_negative = tf.constant(-1e9, tf.float32)
    starts = tf.where(in_context, start_logits, very_negative)
    ends = tf.where(in_context, end_logits, very_negative)
    length = tf.shape(starts)[1]
    i = tf.range(length)[:, None]
    j = tf.range(length)[None, :]
    band = tf.logical_and(j >= i, j - i < max_answer_length)
    pair = tf.where(band[None], starts[:, :, None] + ends[:, None, :], very_negative)
    flat = tf.reshape(pair, [tf.shape(pair)[0], -1])
    window_best = tf.reduce_max(flat, axis=1)
    window_arg = tf.argmax(flat, axis=1, output_type=tf.int32)
    example_best = tf.math.unsorted_segment_max(window_best, example_index, num_examples)
    window_ids = tf.range(tf.shape(flat)[0])
    is_best = window_best >= tf.gather(example_best, example_index)
    chosen = tf.math.unsorted_segment_min(tf.where(is_best, window_ids, tf.shape(flat)[0]), example_index, num_examples)
    span = tf.gather(window_arg, chosen)
    start_pos, end_pos = span // length, span % length
    offsets = tf.gather(byte_offsets, chosen)
    start_byte = tf.gather(offsets[:, :, 0], start_pos, batch_dims=1)
    end_byte = tf.gather(offsets[:, :, 1], end_pos, batch_dims=1)
    null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], example_index, num_examples)
    has_span = example_best > very_negative / 2
    answers = tf.logical_and(has_span, null - example_best <= null_score_diff_threshold)
    text = tf.strings.substr(contexts, tf.maximum(start_byte, 0), tf.maximum(end_byte - start_byte, 0), unit="BYTE")
    start_char = tf.strings.length(tf.strings.substr(contexts, tf.zeros_like(start_byte), tf.maximum(start_byte, 0), unit="BYTE"),
                                   unit="UTF8_CHAR")
    end_char = start_char + tf.strings.length(text, unit="UTF8_CHAR")
    no_answer = tf.where(has_span, tf.sigmoid(null - example_best), 1.0)
    return {
        "answer": tf.where(answers, text, ""),
        "score": tf.where(has_span, example_best, null),
        "no_answer_probability": no_answer,
        "start_char": tf.where(answers, start_char, -1),
        "end_char": tf.where(answers, end_char, -1),
    }


def grouped_logits(logits_model, windows, group_size):
    """Span logits of every window, computed `group_size` windows at a time in order of length.

    `qa_windows` pads every window to max_seq_length. Sorted by length, the windows run through
    the encoder in groups, each cut to its own longest window, so a request spends little time on
    padding. Masked positions change no logit, so the answers equal the padded batch's.

    Args:
        logits_model: {token_ids, segment_ids, padding_mask} int32 [G, L] -> (start, end) [G, L].
        windows: `qa_windows`' output (its MODEL_INPUTS are int32 [W, S]).
        group_size: windows per encoder call.
    Returns:
        (start_logits, end_logits), float32 [W, S]; 0 beyond each group's longest window.
    """
    lengths = tf.reduce_sum(windows[PADDING_MASK], axis=1)
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    inputs = {key: tf.gather(windows[key], order) for key in MODEL_INPUTS}
    sorted_lengths = tf.gather(lengths, order)
    count, width = tf.size(order), tf.shape(windows[TOKEN_IDS])[1]
    num_groups = (count + group_size - 1) // group_size

    def run_group(index, starts, ends):
        first = index * group_size
        last, longest = tf.minimum(first + group_size, count), sorted_lengths[first]
        start, end = logits_model({key: value[first:last, :longest] for key, value in inputs.items()}, training=False)
        padding = [[0, 0], [0, width - longest]]
        return (index + 1, starts.write(index, tf.pad(tf.cast(start, tf.float32), padding)),
                ends.write(index, tf.pad(tf.cast(end, tf.float32), padding)))

    arrays = [tf.TensorArray(tf.float32, size=num_groups, infer_shape=False, element_shape=[None, None])
              for _ in range(2)]
    _, starts, ends = tf.while_loop(lambda index, *_: index < num_groups, run_group, [0, *arrays])
    unsort = tf.argsort(order)
    return tf.gather(starts.concat(), unsort), tf.gather(ends.concat(), unsort)


def with_dtype(model, dtype):
    """A copy of a functional `model` whose layers hold weights and compute in `dtype`.

    Args:
        model: a functional keras.Model (nested functional models included) in float32.
        dtype: "float32" (returns `model` itself) or "bfloat16".
    """
    if dtype == "float32":
        return model
    import keras

    def convert(node):
        if isinstance(node, list):
            return [convert(value) for value in node]
        if not isinstance(node, dict):
            return node
        if node.get("class_name") == "DTypePolicy":
            return {**node, "config": {**node["config"], "name": dtype}}
        return {key: dtype if key == "dtype" and value == "float32" else convert(value) for key, value in node.items()}

    copy = keras.Model.from_config(convert(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


class QAServingModule(tf.Module):
    """The exported object: tokenizer + student logits + decoding, behind two signatures."""

    def __init__(self, logits_model, tokenizer, data_config, export_config):
        super().__init__(name="road_qa")
        self.logits_model = logits_model
        self.tokenizer = tokenizer
        self.max_seq_length = data_config.max_seq_length
        self.max_query_length = data_config.max_query_length
        self.doc_stride = data_config.doc_stride
        self.max_answer_length = export_config.max_answer_length
        self.null_score_diff_threshold = float(export_config.null_score_diff_threshold)
        self.window_group_size = export_config.window_group_size

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def answer(self, question, context):
        windows = qa_windows(self.tokenizer, question, context, self.max_seq_length, self.max_query_length,
                             self.doc_stride)
        start, end = grouped_logits(self.logits_model, windows, self.window_group_size)
        return decode_best_spans(start, end, windows["byte_offsets"],
                                 windows["example_index"], tf.size(question), context,
                                 self.max_answer_length, self.null_score_diff_threshold)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=TOKEN_IDS),
                                  tf.TensorSpec([None, None], tf.int32, name=SEGMENT_IDS),
                                  tf.TensorSpec([None, None], tf.int32, name=PADDING_MASK)])
    def token_logits(self, token_ids, segment_ids, padding_mask):
        start, end = self.logits_model(
            {TOKEN_IDS: token_ids, SEGMENT_IDS: segment_ids, PADDING_MASK: padding_mask}, training=False)
        return {"start_logits": tf.cast(start, tf.float32), "end_logits": tf.cast(end, tf.float32)}


def logits_only(model, task_name):
    """The student without hidden-state outputs: inputs -> (start_logits, end_logits)."""
    import keras

    start_key, end_key = logit_keys(task_name, "span")
    return keras.Model(model.inputs, [model.output[start_key], model.output[end_key]], name="qa_logits")


def next_version(model_dir):
    """1 + the highest version folder, one named by a base-10 ASCII integer (1 when there is none).

    Other names are ignored, with a warning unless they are hidden (`.tmp-*`): `str.isdigit()` is
    also true for names such as "²" that `int()` rejects.
    """
    versions = []
    for path in (model_dir.iterdir() if model_dir.exists() else ()):
        if path.name.isascii() and path.name.isdigit():
            versions.append(int(path.name))
        elif not path.name.startswith("."):
            logging.warning("%s: ignoring %r, which is not a version folder (a base-10 integer)", model_dir, path.name)
    return max(versions, default=0) + 1


def remove_stale_tmp(model_dir, max_age_seconds=3600):
    """Deletes `.tmp-*` folders in `model_dir` older than `max_age_seconds` (left by killed exports)."""
    for path in model_dir.glob(".tmp-*"):
        if time.time() - path.lstat().st_mtime > max_age_seconds:
            logging.warning("removing %s, left by an export that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)


def write_warmup(version_dir):
    """Writes `assets.extra/tf_serving_warmup_requests` (PredictionLog TFRecords TF Serving replays)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    extra = version_dir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
        request.inputs["question"].CopyFrom(tf.make_tensor_proto([q for q, _ in WARMUP_EXAMPLES]))
        request.inputs["context"].CopyFrom(tf.make_tensor_proto([c for _, c in WARMUP_EXAMPLES]))
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


def save_qa_model(model, tokenizer, config, task_name, directory):
    """Writes the raw-text QA SavedModel (signatures, warm-up requests) into `directory` and checks its ops."""
    logits_model = with_dtype(logits_only(model, task_name), config.export.precision)
    module = QAServingModule(logits_model, tokenizer, config.data, config.export)
    tf.saved_model.save(module, str(directory), signatures={
        "serving_default": module.answer.get_concrete_function(),
        "serve_token_ids": module.token_logits.get_concrete_function(),
    })
    write_warmup(pathlib.Path(directory))
    check_serving_ops(directory)


def export_qa_model(model, tokenizer, config, task_name, base_dir=None, model_name=None):
    """Writes `<base>/<name>/<next version>/` atomically; returns its path. A model with NaN or
    infinite weights is refused (RoadError), and stale `.tmp-*` folders are removed."""
    check_finite_weights(model)
    export = config.export
    model_dir = pathlib.Path(base_dir or export.base_dir) / (model_name or export.model_name)
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(model_dir)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=model_dir, prefix=".tmp-"))
    try:
        save_qa_model(model, tokenizer, config, task_name, tmp)
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


def load_run_student(run_dir):
    """Rebuilds a finished run's student: (config, task, tokenizer, model with trained weights)."""
    from road_tf.config import load_config
    from road_tf.data.tokenizer import load_tokenizer
    from road_tf.experiment import build_model
    from road_tf.tasks import get_task

    run_dir = pathlib.Path(run_dir)
    weights = run_dir / "student" / "model.weights.h5"
    if not (run_dir / "config.yaml").is_file() or not weights.is_file():
        raise RoadError(f"{run_dir}: not a finished run (needs config.yaml and student/model.weights.h5)")
    config = load_config(run_dir / "config.yaml")
    task = get_task(config.task)
    if task.kind != "span":
        raise RoadError(f"{run_dir}: task {task.name!r} is not a QA task; only QA students are exported")
    tokenizer = load_tokenizer(config.data.vocab)
    model = build_model(config.model, task, tokenizer, config, "student")
    model.load_weights(str(weights))
    return config, task, tokenizer, model


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m road_tf.export",
                                     description="Export a trained run's student as a TF Serving SavedModel version.")
    parser.add_argument("--run-dir", required=True, help="a finished training run (holds config.yaml, student/)")
    parser.add_argument("--model-name", required=True, help="folder name under --base")
    parser.add_argument("--base", default="saved_models", help="TF Serving model base directory")
    return parser.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    config, task, tokenizer, model = load_run_student(args.run_dir)
    print(export_qa_model(model, tokenizer, config, task.name, base_dir=args.base, model_name=args.model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
