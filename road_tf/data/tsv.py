"""Tab-separated files: read line by line (plain or gzipped) with errors that name the line, and
written atomically.

GLUE's TSV files hold quote characters that are plain text (`"` opens no quoted field), so a
line is split on tabs only: what `csv.reader(..., delimiter="\\t", quoting=csv.QUOTE_NONE)` does,
without its limit on field size. Blank lines (empty, or only spaces and tabs) are skipped, and the
header's names are read without blanks around them. Problems with the file itself (missing,
corrupt or truncated gzip, bad header) always stop the read; problems with one record stop it
unless `skip_bad_records` is set, in which case the record is logged, skipped and counted.
"""

import gzip
import itertools
import pathlib
import zlib

from road_tf.data.examples import parse_all
from road_tf.errors import ONLY_WHITESPACE, DataError
from road_tf.files import is_gzipped, open_data_file, write_atomic


MAX_LINE_BYTES = 1 << 24
"""The longest line read, in bytes (16 MiB; GLUE's lines take a few hundred): what a file of one
endless line, such as a small gzip file that unpacks without end, can make the process hold."""


def iter_lines(path):
    """Yields (line number from 1, raw line bytes without the line ending) of a file.

    The file is gunzipped when its name ends in `.gz` or its bytes start like gzip. A UTF-8 byte
    order mark at the start is dropped.

    Raises:
        DataError: the file cannot be opened, is a folder or a device, its gzip stream is corrupt
            or truncated, or a line is longer than MAX_LINE_BYTES (the record named is the line
            that could not be read).
        ConfigError: `path` is a `package:NAME` that names no file installed here.
    """
    path = pathlib.Path(path)
    with open_data_file(path) as handle:
        is_gzip = is_gzipped(path, handle)
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if is_gzip else handle
        number = 0
        while True:
            try:
                raw = stream.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as error:
                raise DataError(path, f"corrupt or truncated gzip data: {error}", f"line {number + 1}") from None
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(path, f"longer than {MAX_LINE_BYTES:,} bytes, the longest line road_tf reads",
                                f"line {number}")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield number, raw.rstrip(b"\n").rstrip(b"\r")


def split_line(path, number, raw, width):
    """Decodes one raw line as UTF-8 and splits it into exactly `width` tab-separated fields.

    Returns:
        list of `width` str.
    Raises:
        DataError: the line is not UTF-8 or has another number of fields.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(path, f"not valid UTF-8: byte 0x{raw[error.start]:02x} at column {error.start + 1}",
                        f"line {number}") from None
    fields = text.split("\t")
    if len(fields) != width:
        raise DataError(path, f"expected {width} tab-separated fields, found {len(fields)}", f"line {number}")
    return fields


def label_index(path, number, column, value, labels):
    """Returns the position of `value` in `labels` (the label strings in class-id order).

    Raises:
        DataError: `value` is not one of `labels`.
    """
    try:
        return labels.index(value)
    except ValueError:
        expected = ", ".join(repr(label) for label in labels)
        raise DataError(path, f"unknown {column} {value!r}; expected one of {expected}", f"line {number}") from None


def text_field(path, number, column, value):
    """Returns `value` (one field of line `number`) unless it is empty or only whitespace.

    Raises:
        DataError: naming the file, the line and the column.
    """
    if not value.strip():
        raise DataError(path, f"{column} is {ONLY_WHITESPACE}", f"line {number}")
    return value


def read_table(path, parse, required, skip_bad_records=False, optional_header=False, id_column=None):
    """Reads a TSV file with a header line into a list of parsed records.

    Args:
        path: a `.tsv` or `.tsv.gz` file.
        parse: `parse(record, number) -> example`, where `record` maps each column name to its str
            field; it raises DataError (naming `path` and `f"line {number}"`) for a bad record.
        required: the column names that must be present.
        skip_bad_records: skip (and log) records whose line or fields are bad instead of raising.
        optional_header: the first line is a header only when it names every `required` column;
            otherwise the columns are `required`, in that order, and the first line is a record.
        id_column: a column whose values must be unique and not blank (a record id), or None.
    Returns:
        list of what `parse` returned, in file order.
    Raises:
        DataError: naming the file, the line and the problem.
    """
    lines = _non_blank(iter_lines(path))
    columns, pending = _header(path, next(lines, None), required, optional_header)
    first_seen = {}

    def parse_line(line):
        number, raw = line
        record = dict(zip(columns, split_line(path, number, raw, len(columns))))
        record_id = text_field(path, number, id_column, record[id_column]) if id_column else None
        if record_id in first_seen:
            raise DataError(path, f"duplicate {id_column} {record_id!r} (first at line {first_seen[record_id]})",
                            f"line {number}")
        example = parse(record, number)
        if id_column:
            first_seen[record_id] = number
        return example

    return parse_all(itertools.chain(pending, lines), parse_line, path, skip_bad_records)


def _non_blank(lines):
    """Filters (number, raw) pairs, dropping blank lines (empty, or only ASCII white space)."""
    return ((number, raw) for number, raw in lines if raw.strip())


def _header(path, line, required, optional_header):
    """Returns (column names, [lines to parse as records]) from the file's first non-blank line.

    Raises:
        DataError: the file is empty, or its header is not UTF-8, repeats a name or lacks a
            required column.
    """
    if line is None:
        raise DataError(path, "file is empty" if optional_header else "file is empty (no header line)")
    number, raw = line
    try:
        names = [name.strip() for name in raw.decode("utf-8").split("\t")]
    except UnicodeDecodeError:
        names = None
    has_all = names is not None and all(name in names for name in required)
    if optional_header and not has_all:
        return list(required), [line]
    if names is None:
        raise DataError(path, "header is not valid UTF-8", f"line {number}")
    if len(set(names)) != len(names):
        raise DataError(path, f"header repeats a column name: {names}", f"line {number}")
    if not has_all:
        missing = [name for name in required if name not in names]
        raise DataError(path, f"header lacks column(s) {', '.join(missing)}; it has {', '.join(names)}",
                        f"line {number}")
    return names, []


def write_tsv(path, header, rows):
    """Writes a UTF-8 TSV file (header line, then one line per row of str fields) atomically.

    Raises:
        ValueError: a field holds a tab or a line break, which the layout cannot carry.
    """
    lines = []
    for row in [header, *rows]:
        if any("\t" in field or "\n" in field or "\r" in field for field in row):
            raise ValueError(f"{path}: a TSV field holds a tab or line break: {row}")
        lines.append("\t".join(row) + "\n")
    write_atomic(path, "".join(lines))
