"""TF Serving's REST API (predict, model status, model metadata) on the stdlib HTTP server.

Routes (as tensorflow_model_server):
    POST /v1/models/NAME[/versions/N]:predict     row ("instances") or columnar ("inputs")
    GET  /v1/models/NAME[/versions/N]             model status
    GET  /v1/models/NAME[/versions/N]/metadata    signature metadata
Errors answer {"error": "..."} with 400 (malformed), 404 (unknown model/version/route),
413 (body above max_request_bytes) or 500.
"""

import json
import logging
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.apis import metadata_json, status_json
from serving.codec import array_to_json, columns_to_rows, json_to_array, rows_to_columns
from serving.errors import ServingError, invalid, not_found
from serving.servables import check_names

LOG = logging.getLogger("serving.devserver")

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?(?P<verb>:predict|/metadata)?$"
)
REQUEST_KEYS = {"signature_name", "instances", "inputs"}
DRAIN_CHUNK = 1 << 16


def predict_json(registry, name, version, request):
    """Runs a REST predict request.

    Args:
        registry: the ModelRegistry; name/version: the model (version None: newest).
        request: the decoded JSON body, e.g.
            {"signature_name": "serving_default", "instances": [{"question": ..., "context": ...}]}.

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
    check_names(columns, specs, "input")
    arrays = {
        key: json_to_array(value, specs[key].dtype.name, f"input {key!r}") for key, value in columns.items()
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


class RestServer(ThreadingHTTPServer):
    """A threaded HTTP server answering TF Serving's REST API.

    Args:
        address: (host, port) to listen on.
        registry: the ModelRegistry to serve.
        max_request_bytes: larger request bodies are answered 413 without being parsed.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, registry, max_request_bytes):
        self.registry = registry
        self.max_request_bytes = max_request_bytes
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request; every answer is JSON with a Content-Length (keep-alive safe)."""

    protocol_version = "HTTP/1.1"
    server_version = "road-tf-devserver"
    timeout = 60

    def do_GET(self):  # noqa: N802  (the stdlib's naming)
        """Answers model status and metadata requests."""
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        """Answers predict requests."""
        self._dispatch("POST")

    def log_message(self, format, *args):  # noqa: A002  (the stdlib's signature)
        """Request lines go to the debug log, not to stderr."""
        LOG.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method):
        """Reads the body, routes by method and path, and answers (errors as {"error": ...})."""
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
            match = ROUTE.match(path)
            if match is None or (method == "POST") != (match["verb"] == ":predict"):
                raise not_found(f"Malformed request: {method} {path}")
            name = urllib.parse.unquote(match["name"])
            version = int(match["version"]) if match["version"] else None
            if method == "POST":
                payload = predict_json(self.server.registry, name, version, _parse_json(body))
            elif match["verb"] == "/metadata":
                payload = metadata_json(self.server.registry, name, version)
            else:
                payload = status_json(self.server.registry, name, version)
            self._answer(200, payload)
        except ServingError as error:
            self._answer(error.http_status, {"error": error.message})
        except Exception as error:  # a bug must not take the server down
            LOG.exception("internal error answering %s %s", method, path)
            self._answer(500, {"error": f"internal error: {type(error).__name__}: {error}"})

    def _read_body(self):
        """The request body (bytes); bodies above max_request_bytes are drained and refused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise invalid("chunked request bodies are not supported; send a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            raise invalid("bad Content-Length header") from None
        if length <= self.server.max_request_bytes:
            return self.rfile.read(length)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, DRAIN_CHUNK))
            if not chunk:
                break
            remaining -= len(chunk)
        raise ServingError(
            "RESOURCE_EXHAUSTED",
            f"request body of {length} bytes exceeds --max_request_bytes={self.server.max_request_bytes}",
        )

    def _answer(self, status, payload):
        """Sends `payload` as a UTF-8 JSON response with HTTP `status`."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _parse_json(body):
    """Request bytes -> decoded JSON; INVALID_ARGUMENT for bad UTF-8 or JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise invalid(f"malformed JSON in request body: {error}") from None
