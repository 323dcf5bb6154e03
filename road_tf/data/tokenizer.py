"""The WordPiece tokenizer shared by training and serving (TF Text ops only).

Training featurizes with the very ops the exported serving signature runs, so a model never sees
token ids at serving time that training would not have produced.
"""

import pathlib

import tensorflow as tf
import tensorflow_text as tf_text

from road_tf.errors import ConfigError
from road_tf.models.convert import minilm_path


def vocab_path(name):
    """Resolves a vocab setting: 'minilm' (BERT uncased, 30,522 pieces) or a vocab.txt path."""
    path = minilm_path() / "vocab.txt" if name == "minilm" else pathlib.Path(name)
    if not path.is_file():
        raise ConfigError(f"data.vocab: no vocabulary file at {path}")
    return path


def read_vocab(vocab_file):
    """The pieces of a BERT `vocab.txt` (one per line, in id order), checked.

    Raises:
        ConfigError: naming `data.vocab` and the file, when it cannot be read, is not UTF-8, holds a
            NUL character or a piece twice, or lacks one of [PAD], [UNK], [CLS], [SEP].
    """
    def fail(problem):
        return ConfigError(f"data.vocab: {vocab_file}: {problem}")

    try:
        raw = pathlib.Path(vocab_file).read_bytes()
    except OSError as error:
        raise fail(f"cannot read file: {error.strerror or error}") from None
    try:
        pieces = raw.decode("utf-8").splitlines()
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


class WordPieceTokenizer(tf.Module):
    """Uncased BERT WordPiece tokenizer over TF Text's `FastBertTokenizer`.

    "Uncased" here is TF Text's NFKC case folding plus accent stripping, which differs from
    Hugging Face's lower-casing on a few characters (ß, ligatures, full-width forms, ½): see
    docs/tokenization.md for the measured parity.

    Args:
        vocab_file: a BERT `vocab.txt`, one piece per line.
    """

    def __init__(self, vocab_file):
        super().__init__(name="wordpiece_tokenizer")
        self.vocab_file = str(vocab_file)
        self.vocab = read_vocab(vocab_file)
        index = {piece: i for i, piece in enumerate(self.vocab)}
        self.pad_id, self.unk_id = index["[PAD]"], index["[UNK]"]
        self.cls_id, self.sep_id = index["[CLS]"], index["[SEP]"]
        self.fast = tf_text.FastBertTokenizer(
            vocab=self.vocab, lower_case_nfd_strip_accents=True, token_out_type=tf.int32, unknown_token="[UNK]"
        )

    @property
    def vocabulary_size(self):
        return len(self.vocab)

    def tokenize(self, texts):
        """tf.string [B] -> token ids, ragged int32 [B, (tokens)]."""
        return self.fast.tokenize(texts)

    def tokenize_with_offsets(self, texts):
        """tf.string [B] -> (ids, byte starts, byte ends), each ragged int32/int64 [B, (tokens)]."""
        return self.fast.tokenize_with_offsets(texts)


def load_tokenizer(vocab="minilm"):
    """Builds the tokenizer named by `data.vocab`."""
    return WordPieceTokenizer(vocab_path(vocab))
