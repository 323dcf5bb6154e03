"""BERT `vocab.txt` files: the one `data.vocab` names, and its pieces, checked (no TensorFlow needed);
the vocabularies of the encoders a run starts from or learns from, compared with it."""

import logging
import pathlib

from road_tf.config import is_run_directory, load_run_config, model_sections
from road_tf.errors import ConfigError
from road_tf.files import entry_kind
from road_tf.minilm import minilm_path

MAX_VOCAB_BYTES = 64 << 20
"""The largest vocab.txt read: BERT's takes 232 kB, a multilingual one of 250,000 pieces a few MB
(a bigger "file", such as /proc/kcore, would be read into memory whole)."""
ENCODER_VOCABULARY = "the encoder's vocabulary"  # names it in what check_encoder_vocabularies says


def vocab_path(name, setting="data.vocab"):
    """Resolves a vocab setting: 'minilm' (BERT uncased, 30,522 pieces) or a vocab.txt path.
    ConfigError, naming `setting`, when no file is there."""
    path = minilm_path() / "vocab.txt" if name == "minilm" else pathlib.Path(name)
    try:
        kind = entry_kind(path)
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path} ({error.strerror})") from None
    if kind is None:
        raise ConfigError(f"{setting}: no vocabulary file at {path}")
    if kind != "a file":
        raise ConfigError(f"{setting}: {path} is {kind}, not a vocabulary file (one WordPiece per line)")
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


def check_encoder_vocabularies(config):
    """Fails when an encoder this run starts from or learns from holds token ids of another vocabulary
    than `data.vocab`: `model.pretrained` or a teacher's `pretrained` (the MiniLM, a run folder, a
    checkpoint folder with a vocab.txt) or a teacher's `run`, trained with other pieces. Sizes are
    checked when the encoders load; this finds vocabularies of one size that differ (ids would be read
    as other pieces). A vocabulary that cannot be read is not compared (a warning says so).

    Raises:
        ConfigError: naming the setting, the encoder's vocabulary and this run's, and the first id
            whose piece differs; or an unfinished or broken run folder, or a folder not searchable.
    """
    folders = {f"{field}.pretrained": model.pretrained for field, model in model_sections(config).items()
               if model.pretrained not in ("none", "preset")}
    for i, teacher in enumerate(config.distillation.teachers):
        if teacher.run:  # its model section is the run's: the run's data.vocab is what it read
            folders.pop(f"distillation.teachers[{i}].model.pretrained", None)
            folders[f"distillation.teachers[{i}].run"] = teacher.run
    pieces = None
    for field, folder in folders.items():
        found = _encoder_vocabulary(field, folder, config.data.vocab)
        if found is None:
            continue
        described, theirs = found
        pieces = read_vocab(vocab_path(config.data.vocab)) if pieces is None else pieces
        if theirs != pieces:
            differ = next((i for i, (a, b) in enumerate(zip(theirs, pieces)) if a != b), min(len(theirs), len(pieces)))
            theirs_at = repr(theirs[differ]) if differ < len(theirs) else "nothing"
            ours_at = repr(pieces[differ]) if differ < len(pieces) else "nothing"
            raise ConfigError(f"{field}: {described} ({len(theirs)} pieces), other pieces than this run's data.vocab "
                              f"{config.data.vocab} ({len(pieces)}): id {differ} is {theirs_at} there, {ours_at} "
                              "here; set data.vocab to the vocabulary the encoder was trained with")


def _encoder_vocabulary(field, folder, vocab):
    """(words naming it, its pieces) of the vocabulary of the encoder that setting `field` names by
    `folder` ("minilm", a run folder or a checkpoint folder); None when there is nothing to compare
    with `vocab` (data.vocab): the same setting, a checkpoint without vocab.txt, or a vocabulary
    that cannot be read (logged).

    Raises:
        ConfigError: a run folder that is unfinished or broken, a folder that cannot be searched.
    """
    try:
        if folder == "minilm":
            path, described = "minilm", "the MiniLM's vocab.txt"
        elif is_run_directory(folder):
            path = load_run_config(folder, field).data.vocab
            described = f"the run {folder} was trained with data.vocab {path}"
        else:
            candidate = pathlib.Path(folder) / "vocab.txt"
            path, described = (candidate if entry_kind(candidate) == "a file" else None), f"the checkpoint's {candidate}"
    except OSError as error:
        raise ConfigError(f"{field}: {folder}: cannot look inside: {error.strerror or error}") from None
    if path is None or str(path) == vocab:
        return None
    try:
        return described, read_vocab(vocab_path(path, ENCODER_VOCABULARY), ENCODER_VOCABULARY)
    except ConfigError as error:
        logging.warning("%s: vocabulary not compared with data.vocab: %s", field, error)
        return None
