"""The WordPiece tokenizer shared by training and serving (TF Text ops only).

Training featurizes with the very ops the exported serving signature runs, so a model never sees
token ids at serving time that training would not have produced.
"""

import pathlib

import tensorflow as tf
import tensorflow_text as tf_text

from road_tf.errors import ConfigError
from road_tf.minilm import minilm_path


def vocab_path(name):
    """Resolves a vocab setting: 'minilm' (BERT uncased, 30,522 pieces) or a vocab.txt path."""
    path = minilm_path() / "vocab.txt" if name == "minilm" else pathlib.Path(name)
    if not path.is_file():
        raise ConfigError(f"data.vocab: no vocabulary file at {path}")
    return path


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
        self.vocab = pathlib.Path(vocab_file).read_text(encoding="utf-8").splitlines()
        index = {piece: i for i, piece in enumerate(self.vocab)}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in index:
                raise ConfigError(f"{vocab_file}: vocabulary lacks the special token {special}")
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
