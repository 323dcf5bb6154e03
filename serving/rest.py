"""TF Serving's REST API (predict, model status, model metadata) on a small HTTP/1.1 server.

Routes (as tensorflow_model_server):
    POST /v1/models/NAME[/versions/N]:predict     row ("instances") or columnar ("inputs")
    GET  /v1/models/NAME[/versions/N]             model status
    GET  /v1/models/NAME[/versions/N]/metadata    signature metadata

Every answer, errors included, is JSON with a Content-Length. Errors are {"error": "..."} with
400 (malformed request, JSON or HTTP, including two Content-Length headers, a Transfer-Encoding,
or a body shorter than its Content-Length), 404 (unknown model, version or route), 405 (a method
other than GET and POST), 408 (the request did not arrive within --rest_timeout_seconds), 411 (a
POST without Content-Length), 413 (a body above --max_request_bytes), 414 (a request line above
8 KiB), 431 (headers above 64 KiB or 100 lines), 500 (a bug), 503 (no connection slot free, or
the batch queue is full), 505 (not HTTP/1.x), or the status of an error the model raised while running
(serving.errors.HTTP_STATUS). Each rejected request
logs one line.

Connections: at most --rest_max_connections at once, one thread each; one more is answered 503
and closed at once. A request must arrive whole (request line, headers and body) within
--rest_timeout_seconds of its first byte, and an idle keep-alive connection is closed after as
long, so a client that sends slowly, or declares more body than it sends, gets 408 instead of
holding a thread.
"""

import io
import json
import logging
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

from road_tf.data.json_files import repeated_json_key
from serving.apis import metadata_json, status_json
from serving.batching import InFlight
from serving.codec import array_to_json, columns_to_rows, json_to_array, rows_to_columns
from serving.errors import ServingError, invalid, not_found, printable, reason_phrase
from serving.limits import host_port
from serving.servables import check_names

LOG = logging.getLogger("serving.devserver")

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]{1,19}))?(?P<verb>:predict|/metadata)?$"
)
REQUEST_KEYS = {"signature_name", "instances", "inputs"}
METHODS = ("GET", "POST")
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
READ_CHUNK = 1 << 16
LINGER_SECONDS = 0.5
"""How long a connection the server closes keeps reading what the client still sends, so that
closing does not reset the connection before the client has read the answer."""
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP token: a method or a header name."""
CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
HTTP_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")


def predict_json(registry, name, version, request, limits):
    """Runs a REST predict request.

    Args:
        registry: the ModelRegistry; name/version: the model (version None: newest).
        request: the decoded JSON body, e.g.
            {"signature_name": "serving_default", "instances": [{"question": ..., "context": ...}]}.
        limits: the serving.limits.RequestLimits the request's tensors must stay within.

    Returns:
        {"predictions": [...]} for row requests, {"outputs": {...}} for columnar ones.

    Raises:
        ServingError: INVALID_ARGUMENT for malformed requests, NOT_FOUND for unknown models.
    """
    if not isinstance(request, dict):
        raise invalid("the request body must be a JSON object")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise invalid(f"unknown request key(s) {', '.join(unknown)}; expected {', '.join(sorted(REQUEST_KEYS))}")
    if ("instances" in request) == ("inputs" in request):
        raise invalid("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' must be a string")
    servable = registry.get(name, version)
    specs = servable.input_specs(signature_name)
    if "instances" in request:
        columns = rows_to_columns(request["instances"], sorted(specs))
    else:
        columns = _columnar_inputs(request["inputs"], specs)
    check_names(columns, specs)
    budget = limits.budget()
    arrays = {
        key: json_to_array(value, specs[key].dtype.name, f"input {key!r}", budget)
        for key, value in sorted(columns.items())
    }
    outputs = servable.predict(signature_name, arrays)
    values = {key: array_to_json(array, key) for key, array in outputs.items()}
    if "instances" in request:
        return {"predictions": columns_to_rows(values)}
    return {"outputs": values if len(values) > 1 else next(iter(values.values()))}


def _columnar_inputs(inputs, specs):
    """The "inputs" value -> {input name: JSON tensor}; a bare tensor is allowed for one input."""
    if isinstance(inputs, dict) and (len(specs) > 1 or set(inputs) == set(specs)):
        return inputs
    if len(specs) == 1:
        return {next(iter(specs)): inputs}
    raise invalid("'inputs' must be an object keyed by input name")


def _parse_json(body):
    """Request bytes -> decoded JSON; INVALID_ARGUMENT for bad UTF-8 or JSON, nesting deeper than
    Python's recursion limit, integers too long to convert, or an object that gives a key twice
    (`_unique_keys`)."""
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise invalid(f"malformed JSON in request body: {error}") from None
    except RecursionError:
        raise invalid("malformed JSON in request body: nested too deeply") from None


def _unique_keys(pairs):
    """json.loads object_pairs_hook: the object's (key, value) `pairs` as a dict; INVALID_ARGUMENT when
    it gives a key twice. Python would keep the last value and TF Serving keeps the first ("instances",
    "signature_name", an input of "inputs"), so such a request would get other answers in production."""
    repeated = repeated_json_key(pairs)
    if repeated:
        raise invalid(f"malformed JSON in request body: an object gives the key \"{printable(repeated[0], 80)}\" "
                      f"{repeated[1]} times; give each key once")
    return dict(pairs)


class HttpError(Exception):
    """A request refused at the HTTP level; the connection closes after the answer.

    Args:
        status: the HTTP status (int); message: what is wrong, sent as {"error": message}.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class _DeadlineReader(io.RawIOBase):
    """A socket's input whose reads fail with TimeoutError once `deadline` (time.monotonic())
    has passed: one deadline for a whole request, however slowly its bytes trickle in."""

    def __init__(self, sock):
        super().__init__()
        self._sock = sock
        self.deadline = 0.0

    def readable(self):
        return True

    def readinto(self, buffer):
        """Reads what the socket has (at least 1 byte, or 0 at end of stream) before the deadline."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the read deadline has passed")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Request:
    """What is known of the request being read: for routing, the keep-alive decision and the log."""

    def __init__(self):
        self.method = "-"
        self.target = "-"
        self.keep_alive = False


class _Connection(socketserver.BaseRequestHandler):
    """Answers the requests of one connection in turn (keep-alive), each under its own deadline."""

    def setup(self):
        self._input = _DeadlineReader(self.request)
        self._rfile = io.BufferedReader(self._input, READ_CHUNK)
        self._client = host_port(*self.client_address[:2])

    def handle(self):
        """Serves requests until the client closes, stays idle too long, or an answer closes."""
        try:
            while self._request_arrives():
                with self.server.answering:
                    if not self._serve_one():
                        self._linger()
                        return
        except OSError as error:  # the client went away (reset, broken pipe) or stopped reading
            LOG.debug("REST connection from %s closed: %s", self._client, printable(error))

    def _linger(self):
        """After the last answer: stops sending, then reads and drops what the client still sends
        for up to LINGER_SECONDS (closing with unread input would reset the connection, and the
        client could lose the answer)."""
        self.request.shutdown(socket.SHUT_WR)
        self._input.deadline = time.monotonic() + LINGER_SECONDS
        try:
            while self._rfile.read1(READ_CHUNK):
                pass
        except TimeoutError:
            pass

    def _request_arrives(self):
        """Waits up to --rest_timeout_seconds for a request's first byte -> False when the client
        closed the connection or stayed idle."""
        self._input.deadline = time.monotonic() + self.server.timeout_seconds
        try:
            return bool(self._rfile.peek(1))
        except TimeoutError:
            return False

    def _serve_one(self):
        """Reads, answers and (if refused) logs one request -> whether the connection stays open."""
        self._input.deadline = time.monotonic() + self.server.timeout_seconds
        request = _Request()
        try:
            with self.server.in_flight:
                status, payload = 200, self._respond(request)
        except ServingError as error:
            status, payload = error.http_status, {"error": error.message}
        except HttpError as error:
            request.keep_alive = False
            status, payload = error.status, {"error": error.message}
        except TimeoutError:
            request.keep_alive = False
            status, payload = 408, {"error": f"the request did not arrive whole within "
                                             f"--rest_timeout_seconds={self.server.timeout_seconds:g}"}
        except OSError:
            raise
        except Exception as error:  # a bug must not take the connection down without an answer
            LOG.exception("internal error answering %s %s", request.method, printable(request.target))
            status, payload = 500, {"error": f"internal error: {type(error).__name__}: {error}"}
        if status != 200:
            LOG.info("rejected REST %s %s from %s: HTTP %d: %s", printable(request.method),
                     printable(request.target), self._client, status, printable(payload["error"]))
        if self.server.stopping.is_set():  # the connection would outlive the server
            request.keep_alive = False
        self._send(status, payload, request.keep_alive)
        return request.keep_alive

    def _respond(self, request):
        """Reads one request (filling in `request`) and routes it -> the payload of a 200 answer."""
        headers = self._read_head(request)
        body = self._read_body(request, headers)
        try:
            path = urllib.parse.urlsplit(request.target).path
        except ValueError as error:
            raise HttpError(400, f"malformed request target: {error}") from None
        match = ROUTE.match(path)
        if match is None or (request.method == "POST") != (match["verb"] == ":predict"):
            raise not_found(f"Malformed request: {request.method} {path}")
        name = urllib.parse.unquote(match["name"])
        version = int(match["version"]) if match["version"] else None
        registry = self.server.registry
        if request.method == "POST":
            return predict_json(registry, name, version, _parse_json(body), self.server.limits)
        if match["verb"] == "/metadata":
            return metadata_json(registry, name, version)
        return status_json(registry, name, version)

    def _read_head(self, request):
        """Reads the request line and the headers -> {lower-case header name: [values]}.

        Raises:
            HttpError: 400 (malformed or cut short), 405 (method), 414, 431 or 505 (version).
        """
        line = self._rfile.readline(MAX_REQUEST_LINE + 1)
        if len(line) > MAX_REQUEST_LINE:
            raise HttpError(414, f"the request line is longer than {MAX_REQUEST_LINE} bytes")
        if not line.endswith(b"\n"):
            raise HttpError(400, "the connection closed inside the request line")
        parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
        if len(parts) != 3:
            raise HttpError(400, "malformed request line; expected 'METHOD /path HTTP/1.1'")
        request.method, request.target, version = parts
        match = HTTP_VERSION.fullmatch(version)
        if match is None or not TOKEN.fullmatch(request.method):
            raise HttpError(400, "malformed request line; expected 'METHOD /path HTTP/1.1'")
        if match[1] != "1":
            raise HttpError(505, f"{version} is not supported; use HTTP/1.1")
        headers = self._read_headers()
        connection = ",".join(headers.get("connection", [])).lower()
        request.keep_alive = "close" not in connection if match[2] != "0" else "keep-alive" in connection
        if request.method not in METHODS:
            raise HttpError(405, f"method {request.method} is not supported; use GET or POST")
        return headers

    def _read_headers(self):
        """Reads header lines up to the blank line -> {lower-case name: [values]}; HttpError 431
        above MAX_HEADER_BYTES or MAX_HEADERS lines, 400 for a malformed or cut-short line."""
        headers, size, count = {}, 0, 0
        while True:
            line = self._rfile.readline(MAX_HEADER_BYTES - size + 1)
            size += len(line)
            if size > MAX_HEADER_BYTES:
                raise HttpError(431, f"the request headers are larger than {MAX_HEADER_BYTES} bytes")
            if not line.endswith(b"\n"):
                raise HttpError(400, "the connection closed inside the request headers")
            if line in (b"\r\n", b"\n"):
                return headers
            count += 1
            if count > MAX_HEADERS:
                raise HttpError(431, f"the request has more than {MAX_HEADERS} header lines")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not TOKEN.fullmatch(name):
                raise HttpError(400, f"malformed header line {printable(line[:80])}")
            headers.setdefault(name.lower(), []).append(value.strip(" \t\r\n"))

    def _read_body(self, request, headers):
        """The body its one Content-Length announces (bytes).

        Raises:
            HttpError: 400 (several or malformed Content-Length headers, a Transfer-Encoding,
            a body cut short), 411 (a POST without Content-Length).
            ServingError(RESOURCE_EXHAUSTED): above --max_request_bytes (HTTP 413; the body is
            read and dropped within the deadline so the connection stays usable).
        """
        if "transfer-encoding" in headers:
            raise HttpError(400, "Transfer-Encoding (e.g. chunked bodies) is not supported; send a Content-Length")
        lengths = headers.get("content-length", [])
        if len(lengths) > 1:
            raise HttpError(400, f"the request has {len(lengths)} Content-Length headers; send exactly one")
        if not lengths:
            if request.method == "POST":
                raise HttpError(411, "a POST needs a Content-Length header")
            return b""
        if not CONTENT_LENGTH.fullmatch(lengths[0]):
            raise HttpError(400, f"bad Content-Length {printable(lengths[0], 40)}; expected a number of bytes")
        length = int(lengths[0])
        continues = "100-continue" in ",".join(headers.get("expect", [])).lower()
        if length > self.server.max_request_bytes:
            request.keep_alive = request.keep_alive and not continues and self._drain(length)
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"request body of {length} bytes exceeds --max_request_bytes={self.server.max_request_bytes}",
            )
        if continues:
            self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._rfile.read(length)
        if len(body) < length:
            raise HttpError(400, f"the body ended after {len(body)} of the {length} bytes of its Content-Length")
        return body

    def _drain(self, length):
        """Reads and drops `length` body bytes -> True if all arrived before the deadline."""
        remaining = length
        try:
            while remaining > 0:
                chunk = self._rfile.read(min(remaining, READ_CHUNK))
                if not chunk:
                    return False
                remaining -= len(chunk)
        except TimeoutError:
            return False
        return True

    def _send(self, status, payload, keep_alive):
        """Sends `payload` as a UTF-8 JSON answer with HTTP `status`.

        Lone surrogates (client-sent names echoed in error messages) leave json.dumps unescaped;
        "backslashreplace" writes them as the JSON escape "\\\\udXXX", so the body stays valid JSON.
        """
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8", "backslashreplace")
        head = [f"HTTP/1.1 {status} {reason_phrase(status)}", "Server: road-tf-devserver",
                "Content-Type: application/json", f"Content-Length: {len(body)}"]
        if status == 405:
            head.append(f"Allow: {', '.join(METHODS)}")
        if not keep_alive:
            head.append("Connection: close")
        self.request.settimeout(self.server.timeout_seconds)
        self.request.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)


class RestServer(socketserver.TCPServer):
    """TF Serving's REST API over a ModelRegistry, with a bounded number of connections.

    Args:
        address: (host, port) to listen on; a host with a colon is an IPv6 address ("::1", "::").
            The owner binds it (`server_bind`) and listens (`server_activate`) only once it is
            ready to answer: until then a connection is refused.
        registry: the ModelRegistry to serve.
        max_request_bytes: larger request bodies are answered 413 without being parsed.
        limits: the serving.limits.RequestLimits of predict requests.
        max_connections: connections served at once (one thread each); more are answered 503.
        timeout_seconds: the time a request may take to arrive, and a connection to idle.
        in_flight: the serving.batching.InFlight that counts each request from its first byte
            until its answer is ready to send.

    `answering` counts each request from its first byte until its answer is sent (and, after an
    answer that closes the connection, its unread input drained), which `finish_answers` waits
    for when the server stops; once `stopping` is set, every answer closes its connection.
    """

    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, registry, max_request_bytes, limits, max_connections, timeout_seconds, in_flight):
        self.registry = registry
        self.max_request_bytes = max_request_bytes
        self.limits = limits
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self.in_flight = in_flight
        self.answering = InFlight()
        self.stopping = threading.Event()
        self._answered = threading.Condition()
        self.answering.notify_on_leave(self._answered)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Connection, bind_and_activate=False)  # the owner binds and listens

    def finish_answers(self, timeout):
        """Waits up to `timeout` seconds until no request is being answered -> the number still being
        answered then (0 when all were sent)."""
        with self._answered:
            self._answered.wait_for(lambda: self.answering.count == 0, max(timeout, 0.0))
            return self.answering.count

    def process_request(self, request, client_address):
        """Serves a new connection in its own thread, or refuses it when no slot is free."""
        if not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        try:
            threading.Thread(target=self._serve, args=(request, client_address), name="rest", daemon=True).start()
        except RuntimeError:  # no thread can be started: refuse like a full server
            self._slots.release()
            self._refuse(request, client_address)

    def _serve(self, request, client_address):
        """Runs one connection's handler, then closes it and frees its slot."""
        try:
            self.finish_request(request, client_address)
        except Exception:  # whatever a handler raises ends its connection, logged in one line
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _refuse(self, request, client_address):
        """Answers 503 without reading anything (never blocking the accept loop), then closes."""
        message = f"the server already serves --rest_max_connections={self.max_connections} connections; retry later"
        LOG.info("rejected REST connection from %s: HTTP 503: %s", host_port(*client_address[:2]), message)
        body = json.dumps({"error": message}).encode("ascii")
        head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n" \
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        try:
            request.setblocking(False)
            request.send(head.encode("ascii") + body)
            request.shutdown(socket.SHUT_WR)
            while request.recv(READ_CHUNK):  # drop what has arrived, so that closing sends no reset
                pass
        except OSError:  # BlockingIOError: nothing more has arrived yet
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """Logs a connection's unexpected error in one line (the stdlib would print a traceback)."""
        error = sys.exc_info()[1]
        LOG.warning("REST connection from %s failed: %s", printable(client_address), printable(repr(error)))
