"""The devserver's request error: a gRPC status name plus a message, mapped to HTTP for REST."""

import http

HTTP_STATUS = {
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 413,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""gRPC status name -> the HTTP status the REST API answers with: TF Serving's, but 413 for
RESOURCE_EXHAUSTED (429 there), a model's own included. Besides the devserver's own (INVALID_ARGUMENT,
NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE), the codes of the errors a model raises while running
(a tf.errors.OpError carries one)."""
NONSTANDARD_PHRASES = {499: "Client Closed Request"}
"""Reason phrases of the statuses http.HTTPStatus does not know (499, nginx's, is TF Serving's CANCELLED)."""
LOG_TEXT_LIMIT = 300
"""Characters of a client-supplied text (path, message) a log line keeps."""
MAX_STATUS_BYTES = 2048
"""The longest gRPC status message sent, in UTF-8 bytes. gRPC sends it percent-encoded (up to 3 bytes
a byte) in a trailer and, when a call's metadata exceed the client's limit (8 KiB soft, 16 KiB hard
by default), drops the status for RESOURCE_EXHAUSTED "received metadata size exceeds hard limit": a
message echoing a long model, signature or input name would lose its code and reason."""
CUT_MARK = " ... "
"""What stands for the middle of a status message cut to MAX_STATUS_BYTES."""


def reason_phrase(status):
    """The reason phrase of HTTP `status` (int) for a status line: "Not Found" for 404."""
    return NONSTANDARD_PHRASES.get(status) or http.HTTPStatus(status).phrase


def printable(text, limit=LOG_TEXT_LIMIT):
    """Any text -> one line of printable ASCII for the log (non-ASCII, control characters and
    lone surrogates backslash-escaped), cut to `limit` characters."""
    escaped = ascii(str(text))[1:-1]
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def utf8_safe(text):
    """Text -> the same text with lone surrogates (e.g. from a JSON "\\ud800" escape) written as
    backslash escapes, so that it encodes as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def status_message(text):
    """A gRPC status message of `text`: UTF-8 (`utf8_safe`), at most MAX_STATUS_BYTES. A longer one
    keeps its start and its end (where the reason follows an echoed name: "model '...' is not
    served") around " ... " in place of its middle."""
    text = utf8_safe(text)
    data = text.encode("utf-8")
    if len(data) <= MAX_STATUS_BYTES:
        return text
    half = (MAX_STATUS_BYTES - len(CUT_MARK)) // 2
    return data[:half].decode("utf-8", "ignore") + CUT_MARK + data[-half:].decode("utf-8", "ignore")


class ServingError(Exception):
    """A request the server refuses or fails.

    Args:
        code: a gRPC status name, one of HTTP_STATUS's keys.
        message: what is wrong, in words; sent to the client.
    """

    def __init__(self, code, message):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self):
        """The HTTP status for this error (int)."""
        return HTTP_STATUS[self.code]


def invalid(message):
    """A ServingError for a malformed request (INVALID_ARGUMENT, HTTP 400)."""
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message):
    """A ServingError for an unknown model, version or signature (NOT_FOUND, HTTP 404)."""
    return ServingError("NOT_FOUND", message)


def unavailable(message):
    """A ServingError for a request the server cannot take now: a full batch queue, or shutting
    down (UNAVAILABLE, HTTP 503; the client may retry)."""
    return ServingError("UNAVAILABLE", message)
