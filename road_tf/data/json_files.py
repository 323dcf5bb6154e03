"""JSON text from data files and requests: read (gzipped or not, size-limited, UTF-8), parse with
one-line errors naming the file, and note keys an object gives twice (JSON keeps the last one
silently, other parsers such as TF Serving's the first)."""

import collections
import gzip
import json
import pathlib
import zlib

from road_tf.errors import DataError, shown
from road_tf.files import is_gzipped, open_data_file

MAX_JSON_BYTES = 1 << 30
"""The largest JSON file read (SQuAD data, predictions, a gold file), in bytes once gunzipped (1 GiB,
25 times SQuAD 2.0's training set): what a small gzip file that unpacks without end (a "gzip bomb")
can make the process hold."""


def read_text(path):
    """Returns a UTF-8 file's text; gunzips when the name ends in .gz or the bytes start like gzip.

    Raises:
        DataError: naming the file, when it cannot be read, is a folder or a device, is corrupt
            gzip, holds more than MAX_JSON_BYTES (gunzipped) or is not UTF-8.
        ConfigError: `path` is a `package:NAME` that names no file installed here.
    """
    path = pathlib.Path(path)
    with open_data_file(path) as handle:
        gzipped = is_gzipped(path, handle)
        try:
            raw = (gzip.GzipFile(fileobj=handle, mode="rb") if gzipped else handle).read(MAX_JSON_BYTES + 1)
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            problem = f"corrupt gzip data: {error}" if gzipped else f"cannot read file: {error.strerror or error}"
            raise DataError(path, problem) from None
    if len(raw) > MAX_JSON_BYTES:
        raise DataError(path, f"holds more than {MAX_JSON_BYTES:,} bytes{' once gunzipped' if gzipped else ''}, "
                              "the most road_tf reads from one data file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(path, f"not valid UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}") from None


def read_json(path):
    """Parses a UTF-8 JSON file, gzipped or not, into Python values (`read_text`, `parse_json`).

    Raises:
        DataError: naming the file, when it cannot be read, is corrupt gzip, is not UTF-8, is not
            valid JSON or gives a key twice in one object.
    """
    return parse_json(read_text(path), path)


def parse_json(text, path):
    """Parses the JSON text read from `path` into Python values.

    Raises:
        DataError: naming `path`, when the text is not valid (e.g. truncated) JSON, is nested too
            deeply, holds an integer too long to convert, or has an object that gives a key twice
            (JSON keeps the last value silently: a question's second "answers" would drop its first).
    """
    value, repeated = parse_json_noting_repeats(text, path)
    if repeated:
        raise DataError(path, f"an object gives the key {shown(repeated[0])} {repeated[1]} times; give each key once")
    return value


def parse_json_noting_repeats(text, path):
    """(the Python values of the JSON `text` read from `path`, the first key an object of it gives
    more than once with how often, or None; `loads_noting_repeats`), in one parse; raises what
    `parse_json` raises but for repeated keys."""
    return _decoded(loads_noting_repeats, text, path)


def _decoded(loads, text, path):
    """`loads(text)`, its errors as one-line DataErrors naming `path` (see `parse_json`)."""
    try:
        return loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise DataError(path, "invalid JSON: arrays or objects nested too deeply") from None
    except ValueError as error:  # integers too long to convert (Python's int max-digits limit)
        raise DataError(path, f"invalid JSON: {error}") from None


def repeated_json_key(pairs):
    """(the first key the (key, value) `pairs` of one JSON object give more than once, how often), or
    None: for a `json.loads` object_pairs_hook, since Python keeps a repeated key's last value silently
    (and other parsers, e.g. TF Serving's, its first)."""
    counts = collections.Counter(key for key, _ in pairs)
    return next(((key, count) for key, count in counts.items() if count > 1), None)


def loads_noting_repeats(text):
    """(`json.loads(text)`, the first key an object of it gives more than once with how often, or
    None; `repeated_json_key`), in one parse; raises what `json.loads` raises."""
    found = []

    def pairs(items):
        repeated = repeated_json_key(items)
        if repeated:
            found.append(repeated)
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs), (found[0] if found else None)
