"""Request size limits, checked against the sizes a request DECLARES before anything is allocated.

A gRPC TensorProto may declare `tensor_shape [1, 20000000]` in a 100-byte message, and a JSON
body may hold a million one-character strings; both are refused here, from their shapes,
before a tensor of that size exists. The limits are the devserver's flags
`--max_request_elements`, `--max_string_bytes` and `--max_request_instances`. MAX_SECONDS bounds
the devserver's timeouts and waits.
"""

import dataclasses

from serving.errors import invalid

DEFAULT_MAX_ELEMENTS = 1_000_000
DEFAULT_MAX_STRING_BYTES = 1 << 20
"""1 MiB: above the 100,000 bytes of data.max_context_bytes, the exported model's own per-row limit, so
a context the model would refuse in its row (`error`) does not fail a whole request here."""
DEFAULT_MAX_INSTANCES = 1024
MAX_SECONDS = 24 * 60 * 60
"""The longest timeout or wait the devserver accepts (a day): Python's thread and socket waits
overflow beyond threading.TIMEOUT_MAX (about 9.2e9 s on Linux, 4.3e6 s on Windows)."""
MAX_PORT = 65535
"""The highest TCP port: the devserver's flags and the client's targets stay within 0-MAX_PORT."""


def bracketed(host):
    """`host` as it stands before ":PORT" in an address or URL: an IPv6 literal ("::1") in brackets."""
    return f"[{host}]" if ":" in host else host


def host_port(host, port):
    """"HOST:PORT" for logs and messages, an IPv6 literal host in brackets ("[::1]:8500")."""
    return f"{bracketed(host)}:{port}"


MAX_RANK = 32
"""More dims than any served signature has (TensorFlow's own limit is 254)."""


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """The largest request the devserver accepts.

    Attributes:
        max_elements: tensor elements summed over a request's inputs (serve_token_ids at 32 rows
            of 384 tokens takes 36,864).
        max_string_bytes: bytes of one string element (a question or a context, UTF-8).
        max_instances: rows (dim 0) of an input, i.e. questions per request.
    """

    max_elements: int = DEFAULT_MAX_ELEMENTS
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    max_instances: int = DEFAULT_MAX_INSTANCES

    def budget(self):
        """A fresh RequestBudget for one request."""
        return RequestBudget(self)

    def check_string(self, size, where):
        """Raises INVALID_ARGUMENT when a string of `size` bytes is above max_string_bytes."""
        if size > self.max_string_bytes:
            raise invalid(
                f"{where}: a string of {size} bytes is longer than the server's --max_string_bytes="
                f"{self.max_string_bytes}"
            )


class RequestBudget:
    """The elements one request has declared so far, input by input, against RequestLimits."""

    def __init__(self, limits):
        self.limits = limits
        self.elements = 0

    def take(self, shape, where):
        """Counts one input's declared shape against the limits.

        Args:
            shape: the declared dims (sequence of ints, possibly negative or huge).
            where: names the input in error messages (e.g. "input 'token_ids'").

        Returns:
            The input's element count (int).

        Raises:
            ServingError(INVALID_ARGUMENT): more than MAX_RANK dims, a negative dim, more rows than
            max_instances, or more elements (this input and the earlier ones together) than
            max_elements.
        """
        if len(shape) > MAX_RANK:
            raise invalid(f"{where}: {len(shape)} dimensions are more than the {MAX_RANK} the server accepts")
        if any(size < 0 for size in shape):
            raise invalid(f"{where}: shape {list(shape)} has a negative dimension")
        if shape and shape[0] > self.limits.max_instances:
            raise invalid(
                f"{where}: {shape[0]} rows are more than the server's --max_request_instances="
                f"{self.limits.max_instances}"
            )
        elements = 0 if 0 in shape else 1
        for size in shape:
            elements *= size
            if elements > self.limits.max_elements:
                break
        if self.elements + elements > self.limits.max_elements:
            raise invalid(
                f"{where}: shape {list(shape)} has more elements than the request may hold: "
                f"--max_request_elements={self.limits.max_elements}"
            )
        self.elements += elements
        return elements
