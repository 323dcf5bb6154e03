"""BERT `vocab.txt` files: the one `data.vocab` names, and its pieces, checked (no TensorFlow needed)."""

import pathlib

from road_tf.errors import ConfigError
from road_tf.minilm import minilm_path

MAX_VOCAB_BYTES = 64 << 20
"""The largest vocab.txt read: BERT's takes 232 kB, a multilingual one of 250,000 pieces a few MB
(a bigger "file", such as /proc/kcore, would be read into memory whole)."""


def vocab_path(name, setting="data.vocab"):
    """Resolves a vocab setting: 'minilm' (BERT uncased, 30,522 pieces) or a vocab.txt path.
    ConfigError, naming `setting`, when no file is there."""
    path = minilm_path() / "vocab.txt" if name == "minilm" else pathlib.Path(name)
    try:
        found = path.is_file()
    except OSError:
        found = False
    if not found:
        raise ConfigError(f"{setting}: no vocabulary file at {path}")
    return path


def read_vocab(vocab_file, setting="data.vocab"):
    """The pieces of a BERT `vocab.txt` (one per line, in id order), checked.

    Lines end at "\n" (a "\r" before it is dropped), as Hugging Face's and TensorFlow's readers split
    them: a piece may hold other line-breaking characters ("\x85", "\u2028", ...), which
    `str.splitlines` would split, shifting the ids of every later piece.

    Raises:
        ConfigError: naming `setting` and the file, when it cannot be read, is larger than
            MAX_VOCAB_BYTES, is not UTF-8, holds a NUL character or a piece twice, or lacks one of
            [PAD], [UNK], [CLS], [SEP].
    """
    def fail(problem):
        return ConfigError(f"{setting}: {vocab_file}: {problem}")

    try:
        with open(vocab_file, "rb") as stream:
            raw = stream.read(MAX_VOCAB_BYTES + 1)
    except OSError as error:
        raise fail(f"cannot read file: {error.strerror or error}") from None
    if len(raw) > MAX_VOCAB_BYTES:
        raise fail(f"larger than {MAX_VOCAB_BYTES:,} bytes, too large for a vocabulary")
    try:
        pieces = [line.removesuffix("\r") for line in raw.decode("utf-8").removesuffix("\n").split("\n")]
    except UnicodeDecodeError as error:
        raise fail(f"not valid UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}") from None
    seen = {}
    for number, piece in enumerate(pieces, start=1):
        if "\x00" in piece:
            raise fail(f"line {number} holds a NUL character")
        if piece in seen:
            raise fail(f"line {number} repeats the piece {piece!r} of line {seen[piece]}")
        seen[piece] = number
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if special not in seen:
            raise fail(f"vocabulary lacks the special token {special}")
    return pieces
