"""The WordPiece tokenizer shared by training and serving (TF Text ops only).

Training featurizes with the very ops the exported serving signature runs, so a model never sees
token ids at serving time that training would not have produced.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from road_tf.data.vocab import read_vocab, vocab_path


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
        self.pad_id, self.cls_id, self.sep_id = index["[PAD]"], index["[CLS]"], index["[SEP]"]
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
