"""Test helpers for serving/: a toy SavedModel with road_tf's serving contract, ports, processes.

The toy reader answers with a whole whitespace token of the context that also occurs in
the question: version 1 picks the FIRST such token, version 2 the LAST one, so a version
swap is visible in the answers. It tokenizes with TF Text's WhitespaceTokenizer, so a
server that forgot `import tensorflow_text` cannot load it (as with the real exports).
"""

import contextlib
import errno
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QA_EXAMPLES = [
    {"question": "Where do red and blue meet?", "context": "green red yellow blue purple"},
    {"question": "Who wrote it?", "context": "nobody here knows"},
    {"question": "is this café open late", "context": "the café is open until late"},
]
"""Questions whose first and last shared tokens differ (row 0, 2) and one without any (row 1)."""

EXPECTED_ANSWERS = {1: ["red", "", "café"], 2: ["blue", "", "late"]}
"""The toy model's answers to QA_EXAMPLES, by version."""

TOY_TABLES = {"token_embedding/embeddings": 1000, "segment_embedding/embeddings": 2, "position_embedding/embeddings": 64}
"""The toy's embedding tables (keras-hub's variable names, as in road_tf's exports) and their rows:
the vocabulary size, the segment count and the longest sequence serve_token_ids takes."""


class ToyReader(tf.Module):
    """Answers with the first (or last) context token that also occurs in the question.

    Args:
        pick_last: False for version 1 (first shared token), True for version 2 (last).
    """

    def __init__(self, pick_last):
        super().__init__()
        self._pick_last = pick_last
        self._tokenizer = tf_text.WhitespaceTokenizer()
        self._tables = [tf.Variable(tf.zeros([rows]), name=name) for name, rows in TOY_TABLES.items()]

    def _answer_one(self, pair):
        """(question, context) scalar strings -> (answer, score, p_no_answer, start, end).

        start/end are character (not byte) offsets, end exclusive: context[start:end] == answer.
        """
        question, context = pair
        tokens, byte_starts, _ = self._tokenizer.tokenize_with_offsets(context)
        shared = tf.reduce_any(
            tf.equal(tokens[:, None], self._tokenizer.tokenize(question)[None, :]), axis=1
        )
        positions = tf.cast(tf.where(shared)[:, 0], tf.int32)
        found = tf.size(positions) > 0
        pick = tf.cond(
            found,
            lambda: positions[-1] if self._pick_last else positions[0],
            lambda: tf.constant(0, tf.int32),
        )
        token = tf.gather(tokens, pick)
        start = tf.strings.length(
            tf.strings.substr(context, 0, tf.gather(byte_starts, pick)), unit="UTF8_CHAR"
        )
        end = start + tf.strings.length(token, unit="UTF8_CHAR")
        answer = tf.where(found, token, "")
        score = tf.cast(tf.strings.length(answer, unit="UTF8_CHAR"), tf.float32)
        return answer, score, tf.where(found, 0.0, 1.0), tf.where(found, start, -1), tf.where(found, end, -1)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="question"),
            tf.TensorSpec([None], tf.string, name="context"),
        ]
    )
    def answer(self, question, context):
        """question, context: [B] strings -> the serving_default outputs, each [B]."""
        answer, score, no_answer, start, end = tf.map_fn(
            self._answer_one,
            (question, context),
            fn_output_signature=(tf.string, tf.float32, tf.float32, tf.int32, tf.int32),
        )
        return {
            "answer": answer,
            "score": score,
            "no_answer_probability": no_answer,
            "start_char": start,
            "end_char": end,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def token_logits(self, token_ids, segment_ids, padding_mask):
        """token_ids, segment_ids, padding_mask: [B, T] int32 -> start/end logits [B, T].

        The zero tables are looked up as an embedding model would (so an id beyond a table fails
        inside the graph); they add nothing to the logits."""
        tokens, segments, positions = self._tables
        lookups = tf.gather(tokens, token_ids) + tf.gather(segments, segment_ids) + positions[: tf.shape(token_ids)[1]]
        start = tf.cast(token_ids * padding_mask, tf.float32) + lookups
        end = tf.cast(segment_ids * padding_mask, tf.float32) + (2.0 if self._pick_last else 1.0)
        return {"start_logits": start, "end_logits": end}


def save_toy_model(path, version):
    """Writes the toy SavedModel for `version` (1 or 2) to the directory `path`, with one
    warmup request (as road_tf.export writes) for serving_default."""
    reader = ToyReader(pick_last=version == 2)
    tf.saved_model.save(
        reader,
        path,
        signatures={"serving_default": reader.answer, "serve_token_ids": reader.token_logits},
    )
    write_warmup(path, {"question": [QA_EXAMPLES[0]["question"]], "context": [QA_EXAMPLES[0]["context"]]})


def save_toy_versions(root):
    """Writes toy versions 1 and 2 to `root`/v1 and `root`/v2 (outside any base path); returns
    {version: path}."""
    paths = {version: os.path.join(str(root), f"v{version}") for version in (1, 2)}
    for version, path in paths.items():
        save_toy_model(path, version)
    return paths


def write_warmup(path, inputs):
    """(Over)writes `path`/assets.extra/tf_serving_warmup_requests with one serving_default
    PredictionLog whose inputs are {name: list of str}."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())


def install_version(staged_path, base_path, version):
    """Copies a staged SavedModel into base_path/<version> atomically (tmp name, then rename)."""
    tmp_path = os.path.join(base_path, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(staged_path, tmp_path)
    os.rename(tmp_path, os.path.join(base_path, str(version)))


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1 and on ::1 (where this machine has IPv6),
    below the kernel's range of ephemeral ports: a port that bind(0) picks is one the kernel also
    gives outgoing connections, and under the parallel test run another test's connection took the
    devserver's port between its bind and its listen."""
    port_range = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range")
    lowest_ephemeral = int(port_range.read_text().split()[0]) if port_range.is_file() else 32768
    loopbacks = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
    for _ in range(1000):
        port = random.randrange(10_000, lowest_ephemeral)
        if all(_bindable(family, host, port) for family, host in loopbacks):
            return port
    raise AssertionError(f"no free port found between 10000 and {lowest_ephemeral}")


def _bindable(family, host, port):
    """Whether a TCP socket can bind `host`:`port` now (True when `family` does not exist here)."""
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return True
    with sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            return error.errno not in (errno.EADDRINUSE, errno.EACCES)
        return True


def http_json(method, url, body=None, timeout=30.0):
    """Sends a request with an optional bytes/str/JSON body -> (HTTP status, decoded JSON body)."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_devserver(args, ready_url, timeout=90.0, log_path=None):
    """Starts `python -m serving.devserver ARGS` and waits until GET ready_url answers 200.

    Returns the subprocess.Popen (text mode) whose stderr is piped, or, with `log_path`, written
    to that file (a pipe nobody reads would block a server that logs a lot).
    """
    with contextlib.ExitStack() as stack:
        log = None if log_path is None else stack.enter_context(open(log_path, "w", encoding="utf-8"))
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.devserver", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if log is None else log,
            text=True,
        )

    def output():
        return process.communicate()[1] if log_path is None else pathlib.Path(log_path).read_text(encoding="utf-8")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"devserver exited early: {output()}")
        try:
            if http_json("GET", ready_url, timeout=2.0)[0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"devserver did not become ready: {output()}")


def stop_devserver(process, sig):
    """Sends `sig` to the devserver, waits for it -> (exit code, its stderr text)."""
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr


def direct_rows(path, questions, contexts):
    """Loads a SavedModel in this process and answers with serving_default -> list of row dicts
    of its outputs as Python values (strings decoded from UTF-8)."""
    outputs = tf.saved_model.load(str(path)).signatures["serving_default"](
        question=tf.constant(questions), context=tf.constant(contexts)
    )
    return [{name: _python_value(value[row].numpy()) for name, value in outputs.items()}
            for row in range(len(questions))]


def _python_value(value):
    """A NumPy scalar of a string, float or integer output -> str (UTF-8), float or int."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item()


def tensor(dtype, dims, unknown_rank=False, **values):
    """A TensorProto with the given DataType enum, declared dims and raw value fields."""
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims],
                                              unknown_rank=unknown_rank)
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)
