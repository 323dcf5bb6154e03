"""Ask a served road_tf model (TF Serving or the devserver) for answers, over REST or gRPC.

    python -m serving.client "Who wrote it?" --context "It was written by Ada." \\
        [--rest http://HOST:8501 | --grpc HOST:8500] [--model road_demo] [--version N]
    python -m serving.client --batch-file questions.jsonl [--output answers.jsonl]

One question prints one JSON object: the serving_default signature's outputs (answer,
score, no_answer_probability, start_char, end_char). A batch file holds one JSON object a
line, {"question": ..., "context": ...} with an optional "id"; the answers come back as
JSONL in the same order, with the id. Errors print one line on stderr and exit 2.

Library use: predict_rest(...) and predict_grpc(...) (or RestPredictor / GrpcPredictor, which
keep their connections for many calls) return one dict of outputs per question. REST never imports TensorFlow; gRPC imports grpc and
TensorFlow when first used.
"""

import contextlib
import functools
import http.client
import io
import json
import math
import os
import sys
import tempfile
import threading
import types
import urllib.parse
import warnings

from road_tf.errors import ArgumentParser, DataError, RoadError, cli_main, nonempty
from road_tf.files import open_data_file
from serving.codec import array_to_json

DEFAULT_REST_URL = "http://127.0.0.1:8501"
DEFAULT_MODEL = "road_demo"
SIGNATURE = "serving_default"
OUTPUT_ORDER = ("answer", "score", "no_answer_probability", "start_char", "end_char")


class ServerError(RoadError):
    """The server could not be reached, refused the request, or answered nonsense."""


def _ordered(outputs):
    """Output dict -> the same dict with the contract's outputs first, in contract order."""
    first = {name: outputs[name] for name in OUTPUT_ORDER if name in outputs}
    return {**first, **{name: value for name, value in outputs.items() if name not in first}}


def _check_batch(questions, contexts):
    """Raises ValueError unless there are as many contexts as questions, and at least one."""
    if len(questions) != len(contexts) or not questions:
        raise ValueError(f"need as many contexts as questions (>0), got {len(questions)} and {len(contexts)}")


def _model_path(model, version):
    """The /v1/models/... path for a model and optional version (no verb)."""
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    return path if version is None else f"{path}/versions/{int(version)}"


def _error_text(body):
    """A REST error body -> its "error" message, or the start of the raw body."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", errors="replace").strip() or "(empty body)"


class RestPredictor:
    """TF Serving's REST predict API over a pool of kept-alive HTTP connections, one per call in
    progress (a new TCP connection per question would cost the client and the server time).

    Args:
        url: the server root, e.g. "http://127.0.0.1:8501" (http or https).
        timeout: seconds to wait for each call.

    Raises:
        ServerError: a URL that is not http(s)://HOST[:PORT].
    """

    def __init__(self, url, timeout=30.0):
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port  # urlsplit checks the port only when asked
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ServerError(f"bad REST URL {url!r}; expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self._parts = parts
        self._timeout = timeout
        self._idle = []
        self._lock = threading.Lock()

    def predict(self, model, questions, contexts, version=None):
        """Answers questions (row format) -> a list of output dicts, one per question, e.g.
        {"answer": "Ada", "score": 7.5, "no_answer_probability": 0.01, "start_char": 18, "end_char": 21}.

        Raises:
            ServerError: unreachable server, an error answer (its "error" text), or a bad response.
        """
        _check_batch(questions, contexts)
        path = f"{self._parts.path.rstrip('/')}{_model_path(model, version)}:predict"
        endpoint = f"{self._parts.scheme}://{self._parts.netloc}{path}"
        body = json.dumps(
            {
                "signature_name": SIGNATURE,
                "instances": [{"question": q, "context": c} for q, c in zip(questions, contexts)],
            }
        ).encode("utf-8")
        status, raw = self._post(path, body)
        if status != 200:
            raise ServerError(f"{endpoint}: HTTP {status}: {_error_text(raw)}")
        try:
            predictions = json.loads(raw)["predictions"]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{endpoint}: unexpected response: {raw[:200]!r}") from None
        if not isinstance(predictions, list) or len(predictions) != len(questions):
            raise ServerError(f"{endpoint}: expected {len(questions)} predictions, got {predictions!r:.200}")
        if not all(isinstance(row, dict) for row in predictions):
            raise ServerError(f"{endpoint}: predictions are not objects of named outputs")
        return [_ordered(row) for row in predictions]

    def _post(self, path, body):
        """POSTs `body` on an idle pooled connection (or a new one) -> (HTTP status, response
        bytes). A connection the server closed while it was idle is replaced once (a predict may
        be sent again); the connection goes back to the pool after a complete exchange."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            connection = kind(self._parts.hostname, self._parts.port, timeout=self._timeout)
        for attempt in (1, 2):
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                connection.close()  # the next request() opens a new connection
                if attempt == 2:
                    raise ServerError(f"REST server at {self.url} closed the connection: {error}") from None
                continue
            except OSError as error:
                connection.close()
                raise ServerError(f"cannot reach REST server at {self.url}: {error}") from None
            except http.client.HTTPException as error:
                connection.close()
                raise ServerError(f"REST server at {self.url} sent a malformed answer: {error!r}") from None
            with self._lock:
                self._idle.append(connection)
            return answer

    def close(self):
        """Closes the pooled connections."""
        with self._lock:
            for connection in self._idle:
                connection.close()
            self._idle = []


def predict_rest(url, model, questions, contexts, version=None, timeout=30.0):
    """Answers questions through TF Serving's REST predict API (row format), on one connection.

    Args:
        url: the server root, e.g. "http://127.0.0.1:8501".
        model: the model name; version: an int, or None for the newest.
        questions, contexts: equally long lists of str (one pair per answer).
        timeout: seconds to wait for the server.

    Returns:
        A list of output dicts, one per question (see RestPredictor.predict).

    Raises:
        ServerError: unreachable server, an error answer (its "error" text), or a bad response.
    """
    with contextlib.closing(RestPredictor(url, timeout)) as predictor:
        return predictor.predict(model, questions, contexts, version)


def _grpc_modules():
    """Imports grpc, TensorFlow and the TF Serving protos -> a namespace of modules.

    google.api_core's Python-version FutureWarning is silenced: it would bury the CLI's
    one-line errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    return types.SimpleNamespace(
        grpc=grpc, tf=tf, predict_pb2=predict_pb2, prediction_service_pb2_grpc=prediction_service_pb2_grpc
    )


class GrpcPredictor:
    """A reusable gRPC channel to PredictionService.Predict.

    Args:
        target: "HOST:PORT" of the gRPC API (TF Serving's --port, 8500 by default).
        timeout: seconds to wait for each call.
    """

    def __init__(self, target, timeout=30.0):
        self._apis = _grpc_modules()
        self.target = target
        self._timeout = timeout
        self._channel = self._apis.grpc.insecure_channel(target)
        self._stub = self._apis.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, model, questions, contexts, version=None):
        """Like predict_rest, over gRPC (TensorProto inputs built with tf.make_tensor_proto)."""
        tf = self._apis.tf
        _check_batch(questions, contexts)
        request = self._apis.predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = SIGNATURE
        if version is not None:
            request.model_spec.version.value = int(version)
        request.inputs["question"].CopyFrom(tf.make_tensor_proto(list(questions), dtype=tf.string))
        request.inputs["context"].CopyFrom(tf.make_tensor_proto(list(contexts), dtype=tf.string))
        try:
            response = self._stub.Predict(request, timeout=self._timeout)
        except self._apis.grpc.RpcError as error:
            raise ServerError(self._describe(error)) from None
        columns = {name: array_to_json(tf.make_ndarray(proto), name) for name, proto in response.outputs.items()}
        if not columns or any(len(values) != len(questions) for values in columns.values()):
            raise ServerError(f"gRPC server at {self.target}: outputs do not have {len(questions)} rows")
        return [_ordered({name: values[row] for name, values in columns.items()}) for row in range(len(questions))]

    def _describe(self, error):
        """A grpc.RpcError -> one line naming the server and the problem."""
        code, details = error.code(), (error.details() or "").strip()
        if code.name == "UNAVAILABLE":
            return f"cannot reach gRPC server at {self.target}: {details}"
        if code.name == "DEADLINE_EXCEEDED":
            return f"gRPC server at {self.target} did not answer within {self._timeout:g} s"
        return f"gRPC server at {self.target}: {code.name}: {details}"

    def close(self):
        """Closes the channel."""
        self._channel.close()


def predict_grpc(target, model, questions, contexts, version=None, timeout=30.0):
    """Answers questions through TF Serving's gRPC Predict; see predict_rest for the arguments."""
    with contextlib.closing(GrpcPredictor(target, timeout)) as predictor:
        return predictor.predict(model, questions, contexts, version)


def parse_args(argv):
    """Command-line arguments -> argparse.Namespace (checked: one mode, one context source)."""
    parser = ArgumentParser(prog="python -m serving.client", description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", help="the question (omit with --batch-file)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--context", help="the passage to answer from")
    source.add_argument("--context-file", type=nonempty, help="a UTF-8 file holding the passage")
    parser.add_argument("--batch-file", type=nonempty, help="JSONL of {question, context[, id]}; answers as JSONL")
    parser.add_argument("--output", type=nonempty, help="write the answers here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32, help="questions per request (default 32)")
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--rest", metavar="URL", help=f"REST API root (default {DEFAULT_REST_URL})")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC API address, e.g. localhost:8500")
    parser.add_argument("--model", type=nonempty, default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--version", type=int, help="model version (default: the newest)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    args = parser.parse_args(argv)
    if args.batch_file:
        if args.question is not None or args.context is not None or args.context_file:
            parser.error("--batch-file replaces QUESTION, --context and --context-file")
    elif args.question is None or (args.context is None and not args.context_file):
        parser.error("give QUESTION with --context or --context-file, or --batch-file")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.version is not None and args.version < 0:
        parser.error(f"--version must not be negative, got {args.version}")
    return args


def read_context_file(path):
    """A UTF-8 text file (or pipe; not a folder or device) -> its content (str)."""
    try:
        with io.TextIOWrapper(open_data_file(path), encoding="utf-8") as stream:
            return stream.read()
    except OSError as error:
        raise DataError(path, f"cannot read context file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None


def read_batch_file(path):
    """A JSONL file (or pipe; not a folder or device) of {"question", "context"[, "id"]} objects -> list
    of those dicts.

    Blank lines are skipped; other keys are ignored.

    Raises:
        DataError: unreadable file, a line that is not a JSON object, a missing or non-string
        question/context, an id that is neither a string nor an integer, or no records at all.
    """
    records = []
    try:
        with io.TextIOWrapper(open_data_file(path), encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    records.append(_batch_record(path, number, line))
    except OSError as error:
        raise DataError(path, f"cannot read batch file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not records:
        raise DataError(path, "no records (expected one JSON object per line)")
    return records


def _batch_record(path, number, line):
    """One JSONL line -> {"question", "context"[, "id"]}; DataError naming the line if bad."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(path, f"line {number}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise DataError(path, f"line {number}: expected a JSON object, got {type(record).__name__}")
    for key in ("question", "context"):
        if not isinstance(record.get(key), str):
            raise DataError(path, f"line {number}: {key!r} is missing or not a string")
    kept = {"question": record["question"], "context": record["context"]}
    if "id" in record:
        if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)):
            raise DataError(path, f"line {number}: 'id' must be a string or an integer")
        kept["id"] = record["id"]
    return kept


def _answer_lines(predict, records, batch_size):
    """Yields one JSON line per record, asking the server batch_size records at a time."""
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        answers = predict([r["question"] for r in chunk], [r["context"] for r in chunk])
        for record, answer in zip(chunk, answers):
            row = {"id": record["id"], **answer} if "id" in record else answer
            yield json.dumps(row, ensure_ascii=False)


def write_lines(lines, output):
    """Writes lines to stdout, or to `output` atomically (a temp file renamed when complete)."""
    if output is None:
        for line in lines:
            print(line, flush=True)
        return
    directory = os.path.dirname(os.path.abspath(output))
    try:
        handle, tmp_path = tempfile.mkstemp(dir=directory, prefix=".answers-", suffix=".tmp")
    except OSError as error:
        raise RoadError(f"{output}: cannot write answers: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for line in lines:
                stream.write(line + "\n")
        os.replace(tmp_path, output)
    except BaseException:
        os.unlink(tmp_path)
        raise


def _predict_function(args, stack):
    """The server call for the chosen API: (questions, contexts) -> list of output dicts."""
    if args.grpc:
        # The CLI only borrows TF's proto helpers: its C++ start-up log lines (some at ERROR
        # level on CPU-only hosts) would bury the one-line error messages.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        predictor = stack.enter_context(contextlib.closing(GrpcPredictor(args.grpc, args.timeout)))
        return functools.partial(predictor.predict, args.model, version=args.version)
    predictor = stack.enter_context(contextlib.closing(RestPredictor(args.rest or DEFAULT_REST_URL, args.timeout)))
    return functools.partial(predictor.predict, args.model, version=args.version)


@cli_main
def main(argv=None):
    """Runs the client CLI; returns 0 once every answer is written."""
    args = parse_args(argv)
    if args.batch_file:
        records = read_batch_file(args.batch_file)
    else:
        context = args.context if args.context is not None else read_context_file(args.context_file)
        records = [{"question": args.question, "context": context}]
    with contextlib.ExitStack() as stack:
        predict = _predict_function(args, stack)
        write_lines(_answer_lines(predict, records, args.batch_size), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
