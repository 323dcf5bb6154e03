"""Ask a served road_tf model (TF Serving or the devserver) for answers, over REST or gRPC.

    python -m serving.client "Who wrote it?" --context "It was written by Ada." \\
        [--rest http://HOST:8501 | --grpc HOST:8500] [--model road_demo] [--version N]
    python -m serving.client --batch-file questions.jsonl [--output answers.jsonl]

One question prints one JSON object: the serving_default signature's outputs (answer,
score, no_answer_probability, start_char, end_char, error). A batch file holds one JSON object a
line, {"question": ..., "context": ...} with an optional "id"; the answers come back as
JSONL in the same order, with the id. Errors print one line on stderr and exit 2, and so does a
question the model refuses (a non-empty "error", e.g. a context above the data.max_context_bytes
it was exported with), naming it and the model's reason; a blank question or context (empty or
only white space, which the model refuses) is refused before any request. --timeout
bounds each request as a whole (connecting, sending and the whole answer; at most a day), and
a REST answer above 64 MiB is refused.

Library use: predict_rest(...) and predict_grpc(...) (or RestPredictor / GrpcPredictor, which
keep their connections for many calls) return one dict of outputs per question; they send blank
texts as given, and the model answers such a row with its "error" output. REST never imports
TensorFlow; gRPC imports grpc and TensorFlow when first used.
"""

import contextlib
import functools
import http.client
import io
import json
import math
import os
import re
import socket
import sys
import threading
import time
import types
import urllib.parse
import warnings

from road_tf.data.json_files import loads_noting_repeats
from road_tf.errors import (ArgumentParser, DataError, RoadError, bounded, cli_main, finite_float, nonempty,
                            positive_integer, text_problem, utf8_problem, whole_number)
from road_tf.files import MAX_VERSION, check_distinct, check_writable_file, open_data_file, write_atomic
from serving.codec import NUMPY_DTYPES, VALUE_FIELDS, array_to_json
from serving.limits import MAX_PORT, MAX_SECONDS, bracketed

DEFAULT_REST_URL = "http://127.0.0.1:8501"
DEFAULT_MODEL = "road_demo"
SIGNATURE = "serving_default"
OUTPUT_ORDER = ("answer", "score", "no_answer_probability", "start_char", "end_char", "error")
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest REST answer the client reads (a batch of answers is far smaller)."""
MAX_INPUT_CHARS = 64 * 1024 * 1024
"""The longest --context file or batch-file line read (a question's context takes kilobytes): a pipe
of endless text (`<(cat /dev/zero)`) is refused instead of read into memory without end."""
SHOWN_CHARS = 200
"""Characters of a user's or server's text (URL, model name, error message) an error message keeps."""
_HOST_BYTES = re.compile(r"[\x00-\x20\x7f]")
"""Characters http.client refuses in a URL's host or path (controls and spaces)."""
_PATH_CHARACTERS = "/%:@!$&'()*+,;=~"
"""Characters a URL's path keeps as they are (RFC 3986's pchar, and % of escapes); others are percent-encoded."""
_GRPC_PORT = re.compile(r":([-+]?[0-9]+)\Z")
"""The port that ends a gRPC address (":8500"), signed or not, so that "-1" is caught too."""
SOCKET_TARGETS = ("unix:", "unix-abstract:", "vsock:")
"""gRPC target schemes that name a socket, not a TCP port."""
REJECTED_CODES = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED")
"""The gRPC codes of a request the server refuses (ServerError.rejected): those TF Serving answers with
HTTP 400 over REST, and RESOURCE_EXHAUSTED (a message above the server's limit, HTTP 413 at the devserver)."""


class ServerError(RoadError):
    """The server could not be reached, refused the request, or answered nonsense.

    Attributes:
        rejected: True when the server answered that the request itself is bad (HTTP 400 or
            413, gRPC REJECTED_CODES): another question may pass.
    """

    def __init__(self, message, rejected=False):
        super().__init__(message)
        self.rejected = rejected


def _shorten(text, limit=SHOWN_CHARS):
    """`text` cut to `limit` characters (with "..." when cut), so an error message stays readable."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _check_timeout(timeout):
    """Raises ValueError unless `timeout` is a number of seconds in (0, MAX_SECONDS]."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= MAX_SECONDS):
        raise ValueError(f"timeout must be a number of seconds above 0 and at most {MAX_SECONDS}, got {timeout!r}")


def _ordered(outputs):
    """Output dict -> the same dict with the contract's outputs first, in contract order."""
    first = {name: outputs[name] for name in OUTPUT_ORDER if name in outputs}
    return {**first, **{name: value for name, value in outputs.items() if name not in first}}


def _check_batch(model, questions, contexts, version):
    """Raises ValueError unless there are as many contexts as questions (and at least one), the
    model name and every text can be sent as UTF-8, and the version is None or 0..MAX_VERSION."""
    if len(questions) != len(contexts) or not questions:
        raise ValueError(f"need as many contexts as questions (>0), got {len(questions)} and {len(contexts)}")
    if version is not None and not 0 <= int(version) <= MAX_VERSION:
        raise ValueError(f"version must be from 0 to {MAX_VERSION}, got {_shorten(version)}")
    texts = [("model name", model)]
    texts += [(f"question {row}", text) for row, text in enumerate(questions)]
    texts += [(f"context {row}", text) for row, text in enumerate(contexts)]
    for what, text in texts:
        problem = utf8_problem(text) if isinstance(text, str) else f"not a str but {type(text).__name__}"
        if problem:
            raise ValueError(f"{what}: {problem}")


def _model_path(model, version):
    """The /v1/models/... path for a model and optional version (no verb)."""
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    return path if version is None else f"{path}/versions/{int(version)}"


def _error_text(body):
    """A REST error body -> its "error" message, or the start of the raw body (cut to SHOWN_CHARS)."""
    try:
        return _shorten(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return body[:SHOWN_CHARS].decode("utf-8", errors="replace").strip() or "(empty body)"


class _DeadlineReader(io.RawIOBase):
    """Reads a connected socket through its own reader (`sock.makefile("rb")`, which keeps the
    socket open until closed), each read waiting only for what is left until `deadline`
    (time.monotonic()): a server trickling a byte a second cannot stretch a call's timeout."""

    def __init__(self, sock, socket_file, deadline):
        super().__init__()
        self._sock = sock
        self._file = socket_file
        self._deadline = deadline

    def readable(self):
        return True

    def readinto(self, buffer):
        self._sock.settimeout(_remaining(self._deadline))
        return self._file.raw.readinto(buffer)

    def close(self):
        self._file.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTPResponse that reads its status line, headers and body through a _DeadlineReader."""

    def __init__(self, sock, *args, deadline, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(sock, self.fp, deadline))


def _remaining(deadline):
    """Seconds left until `deadline` (time.monotonic()); TimeoutError once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


def _resolve(host, port, deadline):
    """socket.getaddrinfo's TCP addresses of (host, port), looked up in a daemon thread and waited
    for only until `deadline`: a slow DNS resolver cannot stretch a call's timeout (TimeoutError)."""
    found = {}

    def look_up():
        try:
            found["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            found["error"] = error

    lookup = threading.Thread(target=look_up, daemon=True)
    lookup.start()
    lookup.join(_remaining(deadline))
    if lookup.is_alive():
        raise TimeoutError("name lookup timed out")
    if "error" in found:
        raise found["error"]
    return found["addresses"]


def _connect_by(deadline):
    """A stand-in for socket.create_connection (HTTPConnection's `_create_connection`) that
    looks the host up within `deadline`, then connects to its addresses in turn, each attempt
    waiting only for what is left."""

    def connect(address, timeout=None, source_address=None):
        error = OSError(f"no address for {address[0]}")
        for family, kind, protocol, _, sockaddr in _resolve(*address, deadline):
            sock = socket.socket(family, kind, protocol)
            try:
                sock.settimeout(_remaining(deadline))
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)  # the whole address: an IPv6 one keeps its scope (fe80::1%eth0)
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as refused:
                sock.close()
                error = refused
        raise error

    return connect


class RestPredictor:
    """TF Serving's REST predict API over a pool of kept-alive HTTP connections, one per call in
    progress (a new TCP connection per question would cost the client and the server time).

    Args:
        url: the server root, e.g. "http://127.0.0.1:8501" (http or https). A user:password@ in
            it is not sent, and left out of error messages.
        timeout: seconds a call may take as a whole: connecting, sending, and reading the whole
            answer (above 0, at most MAX_SECONDS).
        max_response_bytes: the largest answer read; a larger one is a ServerError.

    Raises:
        ServerError: a URL that is not http(s)://HOST[:PORT].
        ValueError: a timeout that is not in (0, MAX_SECONDS].
    """

    def __init__(self, url, timeout=30.0, max_response_bytes=MAX_RESPONSE_BYTES):
        _check_timeout(timeout)
        problem = "expected http://HOST:PORT"
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port  # urlsplit checks the port only when asked
        except ValueError as error:  # "Invalid IPv6 URL", a port out of range
            parts, problem = None, f"{error}; {problem}"
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"bad REST URL {_shorten(repr(url))}: {problem}")
        host = parts.hostname
        if _HOST_BYTES.search(url) or utf8_problem(url):
            raise ServerError(
                f"bad REST URL {_shorten(repr(url))}: it holds spaces, control characters or non-UTF-8 bytes"
            )
        if "?" in url or "#" in url:
            raise ServerError(f"bad REST URL {_shorten(repr(url))}: a query or fragment (? or #) is not part of the "
                              "server's address")
        try:
            too_long = len(host.encode("idna")) > 253
        except UnicodeError:
            too_long = True
        if too_long:
            raise ServerError(
                f"bad REST URL {_shorten(repr(url))}: {_shorten(host, 80)!r} is not a host name "
                "(dot-separated labels of 1 to 63 characters, 253 in all)"
            )
        # http.client sends the path as ASCII: other characters are percent-encoded (escapes kept).
        self._path = urllib.parse.quote(parts.path, safe=_PATH_CHARACTERS).rstrip("/")
        self.url = f"{parts.scheme}://{bracketed(host)}{'' if port is None else f':{port}'}{self._path}"
        self._shown_url = _shorten(self.url)
        self._parts = parts
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._idle = []
        self._lock = threading.Lock()

    def predict(self, model, questions, contexts, version=None):
        """Answers questions (row format) -> a list of output dicts, one per question, e.g.
        {"answer": "Ada", "score": 7.5, "no_answer_probability": 0.01, "start_char": 18, "end_char": 21,
        "error": ""}; a question the model refuses is answered too, its "error" saying why.

        Raises:
            ServerError: unreachable server, an error answer (its "error" text), or a bad response.
        """
        _check_batch(model, questions, contexts, version)
        path = f"{self._path}{_model_path(model, version)}:predict"
        endpoint = _shorten(f"{self.url}{_model_path(model, version)}:predict")
        body = json.dumps(
            {
                "signature_name": SIGNATURE,
                "instances": [{"question": q, "context": c} for q, c in zip(questions, contexts)],
            },
            ensure_ascii=False,  # UTF-8 (checked above): "\uXXXX" escapes made a CJK body twice as long
        ).encode("utf-8")
        status, raw = self._post(path, body)
        if status != 200:
            raise ServerError(f"{endpoint}: HTTP {status}: {_error_text(raw)}", rejected=status in (400, 413))
        try:
            predictions = json.loads(raw)["predictions"]
        except RecursionError:
            raise ServerError(f"{endpoint}: unexpected response: JSON nested too deeply") from None
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{endpoint}: unexpected response: {raw[:SHOWN_CHARS]!r}") from None
        if not isinstance(predictions, list) or len(predictions) != len(questions):
            raise ServerError(
                f"{endpoint}: expected {len(questions)} predictions, "
                f"got {_shorten(repr(predictions)[: SHOWN_CHARS + 1])}"
            )
        if not all(isinstance(row, dict) for row in predictions):
            raise ServerError(f"{endpoint}: predictions are not objects of named outputs")
        return [_ordered(row) for row in predictions]

    def _post(self, path, body):
        """POSTs `body` on an idle pooled connection (or a new one) -> (HTTP status, response
        bytes), all within the timeout. A connection the server closed while it was idle is
        replaced once (a predict may be sent again); the connection goes back to the pool after a
        complete exchange."""
        deadline = time.monotonic() + self._timeout
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            # The port given: with None, http.client would split an IPv6 host ("fe80::abcd") at its last colon.
            port = self._parts.port if self._parts.port is not None else 443 if self._parts.scheme == "https" else 80
            connection = kind(self._parts.hostname, port, timeout=self._timeout)
        for attempt in (1, 2):
            connected = False
            try:
                if connection.sock is None:
                    connection._create_connection = _connect_by(deadline)
                    connection.connect()
                connected = True
                connection.sock.settimeout(_remaining(deadline))  # sendall's whole send
                connection.response_class = functools.partial(_DeadlineResponse, deadline=deadline)
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.status, self._read_body(response)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                connection.close()  # the next attempt opens a new connection
                if attempt == 2:
                    raise ServerError(f"REST server at {self._shown_url} closed the connection: {error}") from None
                continue
            except TimeoutError:
                connection.close()
                if connected:
                    raise ServerError(
                        f"REST server at {self._shown_url} did not answer within {self._timeout:g} s"
                    ) from None
                raise ServerError(f"cannot reach REST server at {self._shown_url} within {self._timeout:g} s") from None
            except OSError as error:
                connection.close()
                raise ServerError(f"cannot reach REST server at {self._shown_url}: {_shorten(error)}") from None
            except http.client.HTTPException as error:
                connection.close()
                raise ServerError(
                    f"REST server at {self._shown_url} sent a malformed answer: {_shorten(repr(error))}"
                ) from None
            except BaseException:
                connection.close()
                raise
            with self._lock:
                self._idle.append(connection)
            return answer

    def _read_body(self, response):
        """The whole body of `response` (bytes); ServerError when it is, or its Content-Length says
        it is, above max_response_bytes (the response, which may own the socket, is closed)."""
        limit = self._max_response_bytes
        chunks, size = [], 0
        if response.length is not None and response.length > limit:
            problem = f"an answer of {response.length} bytes (Content-Length); the client reads at most {limit}"
        else:
            while chunk := response.read(min(1 << 20, limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
            problem = f"an answer above {limit} bytes" if size > limit else None
        if problem:
            response.close()
            raise ServerError(f"REST server at {self._shown_url} sent {problem}")
        return b"".join(chunks)

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
        timeout: seconds to wait for each call (above 0, at most MAX_SECONDS).

    Raises:
        ServerError: an empty or non-UTF-8 target.
        ValueError: a timeout that is not in (0, MAX_SECONDS].
    """

    def __init__(self, target, timeout=30.0):
        _check_timeout(timeout)
        problem = _grpc_target_problem(target)
        if problem:
            raise ServerError(f"bad gRPC target {_shorten(repr(target))}: {problem}")
        self._apis = _grpc_modules()
        self.target = target
        self._shown_target = _shorten(target)
        self._timeout = timeout
        self._channel = self._apis.grpc.insecure_channel(target)
        self._stub = self._apis.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, model, questions, contexts, version=None):
        """Like predict_rest, over gRPC (TensorProto inputs built with tf.make_tensor_proto)."""
        tf = self._apis.tf
        _check_batch(model, questions, contexts, version)
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
            raise self._describe(error) from None
        if not response.outputs:
            raise ServerError(f"gRPC server at {self._shown_target}: the answer holds no outputs")
        columns = {name: self._column(name, proto, len(questions)) for name, proto in response.outputs.items()}
        return [_ordered({name: values[row] for name, values in columns.items()}) for row in range(len(questions))]

    def _column(self, name, proto, rows):
        """One output TensorProto of an answer -> its JSON values, one per question. ServerError when it
        does not declare the shape [rows] (the contract's [None]: a 0-d string was split into its
        characters, a huge declared shape filled memory), has a dtype JSON does not carry, does not
        hold one value per question (TensorFlow repeats the last value to fill the shape), or cannot be read."""
        tf, where = self._apis.tf, f"gRPC server at {self._shown_target}: output {_shorten(repr(name), 80)}"
        shape = "unknown" if proto.tensor_shape.unknown_rank else [dim.size for dim in proto.tensor_shape.dim]
        if shape != [rows]:
            raise ServerError(f"{where} has shape {_shorten(shape, 80)}, expected [{rows}] (one value per question)")
        try:
            dtype = tf.dtypes.as_dtype(proto.dtype).name
        except TypeError:  # not a DataType
            dtype = f"enum {proto.dtype}"
        if dtype not in NUMPY_DTYPES:
            raise ServerError(f"{where} has dtype {dtype}, outside TF Serving's JSON mapping")
        held = len(getattr(proto, VALUE_FIELDS[dtype]))
        if not proto.tensor_content and held != rows:
            raise ServerError(f"{where} holds a value count of {held}, expected {rows} (one per question)")
        try:
            return array_to_json(tf.make_ndarray(proto), name)
        except ValueError as error:  # more values than its shape holds
            raise ServerError(f"{where} is not a readable tensor ({_shorten(error)})") from None

    def _describe(self, error):
        """A grpc.RpcError -> a ServerError naming the server and the problem (one line)."""
        code, details = error.code(), _shorten((error.details() or "").strip())
        if code.name == "UNAVAILABLE":
            return ServerError(f"cannot reach gRPC server at {self._shown_target}: {details}")
        if code.name == "DEADLINE_EXCEEDED":
            return ServerError(f"gRPC server at {self._shown_target} did not answer within {self._timeout:g} s")
        rejected = code.name in REJECTED_CODES
        return ServerError(f"gRPC server at {self._shown_target}: {code.name}: {details}", rejected=rejected)

    def close(self):
        """Closes the channel."""
        self._channel.close()


def _grpc_target_problem(target):
    """None for a usable gRPC target string; otherwise what is wrong with it, in words."""
    if not target:
        return "it is empty; expected HOST:PORT"
    if _grpc_names_no_port(target):
        return "it names no port; expected HOST:PORT (TF Serving's gRPC port is 8500 by default)"
    return utf8_problem(target) or _grpc_port_problem(target)


def _grpc_names_no_port(target):
    """Whether an address of the gRPC `target` (HOST, [IPv6], dns:[//AUTHORITY/]HOST, or an ipv4:/ipv6:
    list) names no port, which gRPC takes for 443. Socket targets name no port and pass."""
    if target.startswith(SOCKET_TARGETS):
        return False
    if target.startswith("dns:"):
        addresses = [target[len("dns:"):].rsplit("/", 1)[-1]]
    elif target.startswith(("ipv4:", "ipv6:")):
        addresses = target[len("ipv4:"):].split(",")
    else:
        addresses = [target]
    return any(":" not in address.rsplit("]", 1)[-1] for address in addresses)


def _grpc_port_problem(target):
    """None unless an address of the gRPC `target` (HOST:PORT, dns:..., or an ipv4:/ipv6: list of
    addresses) ends in a port outside 0-65535, which gRPC would take modulo 65536 and so reach
    another port (127.0.0.1:84036 is 127.0.0.1:18500); what is wrong, in words. Socket targets
    (unix:, unix-abstract:, vsock:) name no TCP port and pass."""
    if target.startswith(SOCKET_TARGETS):
        return None
    for address in target.split(","):
        port = _GRPC_PORT.search(address)
        digits = port[1].lstrip("0") if port else ""  # leading zeros change nothing ("008500")
        if port and not (port[1].isdigit() and len(digits) <= 5 and int(digits or "0") <= MAX_PORT):
            return f"port {_shorten(port[1], 20)} is out of range 0-{MAX_PORT}; expected HOST:PORT"
    return None


def predict_grpc(target, model, questions, contexts, version=None, timeout=30.0):
    """Answers questions through TF Serving's gRPC Predict; see predict_rest for the arguments."""
    with contextlib.closing(GrpcPredictor(target, timeout)) as predictor:
        return predictor.predict(model, questions, contexts, version)


def parse_args(argv):
    """Command-line arguments -> argparse.Namespace (checked: one mode, one context source, numbers
    in range, texts that can be sent as UTF-8)."""
    parser = ArgumentParser(prog="python -m serving.client", description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", help="the question (omit with --batch-file)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--context", help="the passage to answer from")
    source.add_argument("--context-file", type=nonempty, help="a UTF-8 file holding the passage")
    parser.add_argument("--batch-file", type=nonempty, help="JSONL of {question, context[, id]}; answers as JSONL")
    parser.add_argument("--output", type=nonempty, help="write the answers here instead of stdout")
    parser.add_argument("--batch-size", type=positive_integer, default=32, help="questions per request (default 32)")
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--rest", metavar="URL", type=nonempty, help=f"REST API root (default {DEFAULT_REST_URL})")
    server.add_argument("--grpc", metavar="HOST:PORT", type=nonempty, help="gRPC API address, e.g. localhost:8500")
    parser.add_argument("--model", type=nonempty, default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--version", type=bounded(whole_number, 0, MAX_VERSION, f"an integer from 0 to {MAX_VERSION}"),
                        help="model version (default: the newest)")
    seconds = bounded(finite_float, math.nextafter(0, 1), MAX_SECONDS,
                       f"a number of seconds above 0, at most {MAX_SECONDS}")
    parser.add_argument("--timeout", type=seconds,
                        default=30.0, help=f"seconds a request may take in all (default 30, at most {MAX_SECONDS})")
    args = parser.parse_args(argv)
    if args.batch_file:
        if args.question is not None or args.context is not None or args.context_file:
            parser.error("--batch-file replaces QUESTION, --context and --context-file")
    elif args.question is None or (args.context is None and not args.context_file):
        parser.error("give QUESTION with --context or --context-file, or --batch-file")
    texts = {"QUESTION": args.question, "--context": args.context, "--model": args.model, "--rest": args.rest,
             "--grpc": args.grpc}
    for flag, value in texts.items():
        problem = value is not None and (text_problem if flag in ("QUESTION", "--context") else utf8_problem)(value)
        if problem:
            parser.error(f"{flag}: {problem}")
    return args


def read_context_file(path):
    """A UTF-8 text file (or pipe; not a folder or device) -> its content (str)."""
    try:
        with io.TextIOWrapper(open_data_file(path), encoding="utf-8-sig") as stream:  # a leading BOM dropped
            text = stream.read(MAX_INPUT_CHARS + 1)
    except OSError as error:
        raise DataError(path, f"cannot read context file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if len(text) > MAX_INPUT_CHARS:
        raise DataError(path, f"longer than {MAX_INPUT_CHARS:,} characters, the longest context the client sends")
    problem = text_problem(text)
    if problem:
        raise DataError(path, f"the context is {problem}")
    return text


def read_batch_file(path):
    """A JSONL file (or pipe; not a folder or device) of {"question", "context"[, "id"]} objects -> list
    of those dicts, each with its "line" number added.

    Blank lines are skipped; other keys are ignored.

    Raises:
        DataError: unreadable file, a line that is not a JSON object (or nested too deeply, or
        with a number of more digits than Python converts, or giving a key twice), a missing or non-string
        question/context, an id that is neither a string nor an integer, text that is not UTF-8
        (a lone surrogate escape such as "\\ud800"), or no records at all.
    """
    records = []
    try:
        with io.TextIOWrapper(open_data_file(path), encoding="utf-8-sig") as stream:  # a leading BOM dropped
            for number, line in enumerate(iter(lambda: stream.readline(MAX_INPUT_CHARS + 1), ""), start=1):
                if len(line) > MAX_INPUT_CHARS:
                    raise DataError(path, f"line {number}: longer than {MAX_INPUT_CHARS:,} characters, the longest "
                                          "record the client sends")
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
    """One JSONL line -> {"question", "context"[, "id"], "line"}; DataError naming the line if bad."""
    try:
        record, repeated = loads_noting_repeats(line)
    except json.JSONDecodeError as error:
        raise DataError(path, f"line {number}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise DataError(path, f"line {number}: not valid JSON (nested too deeply)") from None
    except ValueError:  # Python's int digit limit (sys.get_int_max_str_digits)
        raise DataError(path, f"line {number}: a number has more digits than {sys.get_int_max_str_digits()}") from None
    if not isinstance(record, dict):
        raise DataError(path, f"line {number}: expected a JSON object, got {type(record).__name__}")
    if repeated:
        raise DataError(path, f"line {number}: the key {_shorten(repr(repeated[0]), 80)} is given {repeated[1]} "
                              "times; give each key once")
    for key in ("question", "context"):
        if not isinstance(record.get(key), str):
            raise DataError(path, f"line {number}: {key!r} is missing or not a string")
    kept = {"question": record["question"], "context": record["context"]}
    if "id" in record:
        if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)):
            raise DataError(path, f"line {number}: 'id' must be a string or an integer")
        kept["id"] = record["id"]
    for key, value in kept.items():
        problem = isinstance(value, str) and (utf8_problem(value) if key == "id" else text_problem(value))
        if problem:
            raise DataError(path, f"line {number}: {key!r} is {problem}")
    kept["line"] = number
    return kept


def _record_name(record):
    """Where a batch-file record is, for an error message: "line 3 (id 'q1')", or "" for a
    command-line question."""
    if "line" not in record:
        return ""
    return f"line {record['line']}" + (f" (id {_shorten(repr(record['id']), 80)})" if "id" in record else "")


def _answer_lines(predict, records, batch_size, path=None):
    """Yields one JSON line per record, asking the server batch_size records at a time.

    When the server rejects a request of several batch-file records (ServerError.rejected, e.g. a
    text above the devserver's --max_string_bytes, a body above its --max_request_bytes, more rows
    than its max_batch_size), they are sent again one at a time: the error names the record the
    server refuses (its line and id), and when each passes alone their answers are kept. A record
    the model answers with an "error" (it refuses the question) stops the answers with a RoadError
    naming the record and the model's reason.
    """
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        try:
            answers = predict([r["question"] for r in chunk], [r["context"] for r in chunk])
        except ServerError as error:
            if path is None:
                raise
            if not (error.rejected and len(chunk) > 1):
                where = _record_name(chunk[0]) if len(chunk) == 1 else f"lines {chunk[0]['line']} to {chunk[-1]['line']}"
                raise ServerError(f"{path}: {where}: {error}") from None
            answers = [_answer_alone(predict, record, path) for record in chunk]
        for record, answer in zip(chunk, answers):
            if answer.get("error"):
                where = "" if path is None else f"{path}: {_record_name(record)}: "
                raise RoadError(f"{where}the model refuses the question: {_shorten(answer['error'])}")
            row = {"id": record["id"], **answer} if "id" in record else answer
            line = json.dumps(row, ensure_ascii=False)
            yield line if utf8_problem(line) is None else json.dumps(row)  # a lone surrogate stays escaped


def _answer_alone(predict, record, path):
    """One batch-file record asked on its own -> its answer; ServerError naming `path` and the record."""
    try:
        return predict([record["question"]], [record["context"]])[0]
    except ServerError as error:
        raise ServerError(f"{path}: {_record_name(record)}: {error}") from None


def write_lines(lines, output):
    """Writes lines to stdout, or to `output` atomically (files.write_atomic: a temporary file
    renamed when complete, mode 644; a link is followed; a folder, device or pipe is refused)."""
    if output is None:
        for line in lines:
            print(line, flush=True)
        return
    text = "".join(f"{line}\n" for line in lines)
    try:
        write_atomic(output, text)
    except OSError as error:
        raise RoadError(f"--output {output}: cannot write answers: {error.strerror or error}") from None


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


def _check_outputs_and_server(args):
    """The checks that need no server and no reading: --output can be written (not a folder,
    device or pipe, nor an input file) and the --rest URL or --grpc target is well formed."""
    if args.output:
        check_writable_file(args.output, "--output")
        inputs = {"--batch-file": args.batch_file, "--context-file": args.context_file}
        check_distinct({"--output": args.output}, inputs)
    if args.grpc:
        problem = _grpc_target_problem(args.grpc)
        if problem:
            raise ServerError(f"bad gRPC target {_shorten(repr(args.grpc))}: {problem}")
    else:
        RestPredictor(args.rest or DEFAULT_REST_URL, args.timeout).close()


@cli_main
def main(argv=None):
    """Runs the client CLI; returns 0 once every answer is written."""
    args = parse_args(argv)
    _check_outputs_and_server(args)
    if args.batch_file:
        records = read_batch_file(args.batch_file)
    else:
        context = args.context if args.context is not None else read_context_file(args.context_file)
        records = [{"question": args.question, "context": context}]
    with contextlib.ExitStack() as stack:
        predict = _predict_function(args, stack)
        write_lines(_answer_lines(predict, records, args.batch_size, args.batch_file), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
