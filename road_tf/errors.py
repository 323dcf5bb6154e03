"""Errors that reach a user, the one way command-line tools report them (and a stop by Ctrl-C or
SIGTERM), and the argparse types that read their flags."""

import argparse
import contextlib
import functools
import math
import re
import reprlib
import signal
import sys

DECIMAL_INTEGER = re.compile(r"[+-]?[0-9]+")
"""The text of a whole number, in a flag or a setting: ASCII decimal digits with an optional sign.
Python's int() would also take "1_0" (10), "٣" (Arabic-Indic 3) or " 5 "."""
DECIMAL_NUMBER = re.compile(r"[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(e[+-]?[0-9]+)?|inf(inity)?|nan)", re.IGNORECASE)
"""The text of a number, in a flag or a setting: ASCII decimal digits with an optional sign, point
and exponent (or inf and nan, which every reader refuses as not finite). Python's float() would also
take "1_0.5" or "٣"."""
INTERRUPTED_EXIT = 128 + signal.SIGINT  # what shells report for a command stopped by Ctrl-C (130)
TERMINATED_EXIT = 128 + signal.SIGTERM  # and by `kill` or a job scheduler's SIGTERM (143)


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
        where = self.path if record is None else f"{self.path}: record {shown_id(record)}"
        super().__init__(f"{where}: {problem}")


MAX_SHOWN_ID = 100
"""The most characters of a record id a message shows (a file may hold ids of any length)."""


def shown_id(record):
    """`record` (an id or line number) as a message shows it: an id above MAX_SHOWN_ID characters is
    cut to its start and its length ("abc... (200000 characters)")."""
    text = str(record)
    return text if len(text) <= MAX_SHOWN_ID else f"{text[:MAX_SHOWN_ID // 2]}... ({len(text)} characters)"


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are RoadErrors, so `cli_main` prints them on one line, and
    that refuses a flag given twice unless it collects its values (`--set`): argparse keeps the last
    silently (`--config demo --config no_kd` ran no_kd)."""

    def error(self, message):
        raise RoadError(f"{message} (see --help)")

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        flags = argv[:argv.index("--")] if "--" in argv else argv
        for action in self._actions:
            if not action.option_strings or isinstance(action, (argparse._AppendAction, argparse._CountAction)):
                continue
            given = [flag for flag in flags if isinstance(flag, str)
                     and any(flag == option or flag.startswith(f"{option}=") for option in action.option_strings)]
            if len(given) > 1:
                self.error(f"argument {'/'.join(action.option_strings)}: given {len(given)} times; give it once")
        return super().parse_known_args(args, namespace)


def nonempty(value):
    """argparse `type` of a path, recipe or model name: the string itself, refused when empty (an
    empty path is the current folder to Python, and an empty flag reads as if it were not given)."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def decimal_integer(text):
    """The int that `text` writes as DECIMAL_INTEGER, or None when it is other text.

    Raises:
        OverflowError: the number needs more than 64 bits (its digits are counted before int(),
            which refuses more than 4,300).
    """
    if not DECIMAL_INTEGER.fullmatch(text):
        return None
    number = int(text) if len(text.lstrip("+-").lstrip("0")) <= 19 else None
    if number is None or not -2**63 <= number < 2**63:
        raise OverflowError("more than 64 bits")
    return number


def whole_number(text):
    """argparse `type` of a whole-number flag: DECIMAL_INTEGER text within 64 bits, as an int."""
    try:
        number = decimal_integer(text)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at most 64 bits, got {shown(text)}") from None
    if number is None:
        raise argparse.ArgumentTypeError(f"must be a whole number in ASCII digits, got {shown(text)}")
    return number


def finite_float(text):
    """argparse `type` of a number flag: DECIMAL_NUMBER text of a finite number, as a float."""
    if not DECIMAL_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a decimal number in ASCII digits, got {shown(text)}")
    number = float(text)
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
    return number


def bounded(kind, low, high, what):
    """An argparse `type`: a number that `kind` (`whole_number` or `finite_float`) reads, from `low`
    to `high`; any other text is refused saying it must be `what` ("a number in [0, 1]")."""

    def convert(text):
        try:
            number = kind(text)
        except argparse.ArgumentTypeError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {shown(text)}")
        return number

    return convert


positive_integer = bounded(whole_number, 1, math.inf, "a positive integer")
"""argparse `type` of a count flag (a batch size, a number of questions): a whole number from 1 up."""


def shown(value):
    """`repr(value)` cut to about 80 characters (and a few items of a list) for error messages."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 80
    short.maxlist = short.maxtuple = short.maxdict = 8
    return short.repr(value)


def one_line(message):
    """`message` with line breaks and other control characters escaped (\\n, \\x00), so it fits one line."""
    return "".join(repr(char)[1:-1] if is_control(char) else char for char in message)


def is_control(char):
    """Whether the character `char` is neither printable nor a space (\\n, \\t, \\x00, ...)."""
    return not (char.isprintable() or char == " ")


def first_control_character(text):
    """The first character of `text` that `is_control`, or None."""
    return next((char for char in text if is_control(char)), None)


def utf8_problem(text):
    """None when the str `text` encodes as UTF-8; otherwise what is wrong, in words: a byte of a
    non-UTF-8 command-line argument (Python passes those on as surrogate escapes) or a lone
    surrogate (from a JSON escape such as "\\ud800"), and where."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as error:
        char = text[error.start]
        what = f"byte 0x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff" else f"lone surrogate {ascii(char)}"
        return f"not UTF-8 text ({what} at character {error.start})"


ONLY_WHITESPACE = "empty or only whitespace"
"""What a text with no character outside str.isspace() is, in the words of every check that refuses
one (data readers, the client, the exported model's "error" output)."""
NO_TOKEN = "has no token: the tokenizer drops all of its characters (invisible, control or combining ones)"
"""Why a question or context that the WordPiece tokenizer reads as empty (only U+200B, control
characters, lone combining marks, ...) is refused, by a run's data check and the exported model."""


def text_problem(text):
    """None when the str `text` can be a question, context or data field: valid UTF-8 (`utf8_problem`)
    with a character that is not white space; otherwise what is wrong, in words."""
    return ONLY_WHITESPACE if not text.strip() else utf8_problem(text)


def is_integer(value):
    """Whether `value` (from parsed JSON or YAML) is an int, not a bool (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value):
    """Whether `value` (from parsed JSON or YAML) is an int or float, not a bool, that converts to a
    finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def first_few(items, limit=3):
    """The first `limit` of the strings `items`, comma-separated, with ", ..." when there are more."""
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def first_line(error, limit=200):
    """The first non-blank line of an exception's message, cut to `limit` characters."""
    return (str(error).strip().splitlines() or [""])[0][:limit]


def error_reason(error):
    """An error in a few words: its class and first line (at most 200 characters), without the
    graph-function prefix of a TensorFlow error (`{{function_node __wrapped__IteratorGetNext...}}`)."""
    message = re.sub(r"^[{][{]function_node [^}]*[}][}] *", "", first_line(getattr(error, "message", str(error)), 1000))
    return f"{type(error).__name__}: {message[:200]}"


KERAS_SHAPE_MISMATCH = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))\. "
                                  r"Target variable: <Variable path=([^,>]+)")
"""How Keras' load_weights says that a saved variable's shape differs from the model's: (the model's
shape, the file's shape, the variable's path)."""
KERAS_UNLOADED = re.compile(r"A total of ([0-9]+) objects could not be loaded")


def weights_mismatch(error):
    """Why Keras' `load_weights` refused a weights file, in one line: the first variable whose
    shape differs ("token_embedding/embeddings is (500, 128) in the model, (500, 96) in the file;
    37 layers do not load"), else the error's first line. Keras' own message spans many lines,
    holds the variable's values and ends its first line in a colon."""
    text = str(error)
    shapes = KERAS_SHAPE_MISMATCH.search(text)
    if not shapes:
        return first_line(error)
    model_shape, file_shape, path = shapes.groups()
    unloaded = KERAS_UNLOADED.search(text)
    count = f"; {unloaded.group(1)} layers do not load" if unloaded and unloaded.group(1) != "1" else ""
    return f"{path} is {model_shape} in the model, {file_shape} in the file{count}"


def tf_error_summary(message):
    """A TF runtime error message -> its explanatory line(s), without headers and stack traces."""
    kept = [
        line
        for line in message.splitlines()
        if line.strip()
        and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node", "<stack traces"))
    ]
    return " ".join(kept) or message.strip()


def cli_main(main):
    """Wraps a command-line `main(argv)` so a RoadError prints one line and exits 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except RoadError as error:
            print(f"error: {one_line(str(error))}", file=sys.stderr)
            sys.exit(2)

    return wrapper


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a job scheduler's stop), raised in the main thread as Ctrl-C raises
    KeyboardInterrupt, so that a command stops the same way: files being written are cleaned up."""


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def one_line_when_stopped(outcome):
    """Ends a command stopped by Ctrl-C or SIGTERM in its body with one line on stderr,
    `interrupted: <outcome()>` or `terminated: <outcome()>`, and the shell's exit code for the
    signal (INTERRUPTED_EXIT, TERMINATED_EXIT), instead of a traceback (Ctrl-C) or no word at all
    (SIGTERM, which raises `Terminated` in the body). Call it from the main thread.

    Args:
        outcome: called once the command stopped -> what became of its work, in words (how to
            resume it, or that nothing was written).
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: {outcome()}", file=sys.stderr)
        sys.exit(TERMINATED_EXIT if terminated else INTERRUPTED_EXIT)
    finally:
        signal.signal(signal.SIGTERM, previous)
