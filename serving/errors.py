"""The devserver's request error: a gRPC status name plus a message, mapped to HTTP for REST."""

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 413,
    "UNAVAILABLE": 503,
}
"""gRPC status name -> the HTTP status the REST API answers with."""
LOG_TEXT_LIMIT = 300
"""Characters of a client-supplied text (path, message) a log line keeps."""


def printable(text, limit=LOG_TEXT_LIMIT):
    """Any text -> one line of printable ASCII for the log (non-ASCII, control characters and
    lone surrogates backslash-escaped), cut to `limit` characters."""
    escaped = ascii(str(text))[1:-1]
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def utf8_safe(text):
    """Text -> the same text with lone surrogates (e.g. from a JSON "\\ud800" escape) written as
    backslash escapes, so that it encodes as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
