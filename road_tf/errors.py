"""Errors that reach a user, and the one way command-line tools report them."""

import functools
import sys


class RoadError(Exception):
    """A user-facing error: its message alone says what is wrong and where."""


class ConfigError(RoadError):
    """A configuration field has a bad name or value."""


class DataError(RoadError):
    """A data file or record is malformed.

    Args:
        path: the file that holds the bad record.
        problem: what is wrong, in words.
        record: the record's id (question id, line number), if known.
    """

    def __init__(self, path, problem, record=None):
        self.path = str(path)
        self.problem = problem
        self.record = record
        where = self.path if record is None else f"{self.path}: record {record}"
        super().__init__(f"{where}: {problem}")


def cli_main(main):
    """Wraps a command-line `main(argv)` so a RoadError prints one line and exits 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except RoadError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
