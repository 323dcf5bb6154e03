"""The one answer decoder: span logits of a question's windows -> answer, n-best, no-answer probability.

`QAAnswerer.answer` is the exported SavedModel's `serving_default`; run evaluation, the TFX gate
and `python -m road_tf.predict` all get their answers from the same TF graph, so the F1 a run
reports is the F1 of the model it exports.

Decoding rules, per question (its windows share one context):
- a span (i, j) of a window is valid when both tokens are context tokens, i <= j and it is at most
  `max_answer_length` tokens long; its score is start_logit[i] + end_logit[j];
- n-best: the `n_best_size` best valid spans over all windows, one per character span (the best
  window's score when overlapping windows yield the same span), best first;
- null score: the smallest start_logit[0] + end_logit[0] ([CLS]) over the question's windows;
- answer: the best span's text, or "" when null - best > `null_score_diff_threshold` or no span is
  valid;
- no-answer probability: sigmoid(null - best) (1.0 when no span is valid), what the official
  metric's na_probs file holds; the dev-tuned threshold is tuned on null - best itself
  (`qa_eval.tuned_null_threshold`), since float32 probabilities tie where sigmoid saturates;
- refused: a question or context above data.max_context_bytes, not valid UTF-8, empty or only
  white space, or of characters the tokenizer drops only (U+200B, control characters, lone
  combining marks) is not read; its row says why in "error" ("" for every other row) and is
  answered as an empty question about an empty context (no answer).
"""

import tensorflow as tf

from road_tf.data.features import (MODEL_INPUTS, PADDING_MASK, SEGMENT_IDS, TOKEN_IDS, keep_pairs, pair_windows,
                                   tokenize_pairs)
from road_tf.errors import NO_TOKEN, ONLY_WHITESPACE

VERY_NEGATIVE = -1e9
BLANK = r"[\s\p{Z}\x{0B}\x{1C}-\x{1F}\x{85}]*"
"""RE2 for a text of only white space: exactly the characters of Python's str.isspace(), which the data
readers' "is empty or only whitespace" check uses (checked over every code point)."""
SERVING_KEYS = ("answer", "score", "no_answer_probability", "start_char", "end_char", "error")
ANSWER_INPUTS = [tf.TensorSpec([None], tf.string, name="question"), tf.TensorSpec([None], tf.string, name="context")]


def _window_top_spans(start_logits, end_logits, byte_offsets, n_best_size, max_answer_length):
    """The best `n_best_size` valid spans of each window.

    Only the band of spans at most `max_answer_length` (A) tokens long is scored: start i, end
    i + d for d < A, [W, S, A] scores instead of all [W, S, S] pairs, which keeps a context of
    thousands of windows (99 kB of U+FDFA tokenize to about 3,900) within about a gigabyte. Spans
    are ranked in (i, j) order on equal scores, as over all pairs.

    Args:
        start_logits, end_logits: float32 [W, S]; byte_offsets: int32 [W, S, 2] (-1 outside the context).
    Returns:
        (score float32 [W, k], start_byte int32 [W, k], end_byte int32 [W, k]) with
        k = min(n_best_size, S * min(A, S)); invalid slots score VERY_NEGATIVE and have bytes -1.
    """
    in_context = byte_offsets[..., 0] >= 0
    starts = tf.where(in_context, start_logits, VERY_NEGATIVE)
    ends = tf.where(in_context, end_logits, VERY_NEGATIVE)
    length = tf.shape(starts)[1]
    width = tf.minimum(max_answer_length, length)
    end_token = tf.range(length)[:, None] + tf.range(width)[None, :]  # [S, A]: the end of each span
    band_ends = tf.gather(ends, tf.minimum(end_token, length - 1), axis=1)  # [W, S, A]
    pair = tf.where((end_token < length)[None], starts[:, :, None] + band_ends, VERY_NEGATIVE)
    flat = tf.reshape(pair, [tf.shape(pair)[0], -1])
    score, index = tf.math.top_k(flat, k=tf.minimum(n_best_size, tf.shape(flat)[1]))
    valid = score > VERY_NEGATIVE / 2
    start = index // width
    end = tf.minimum(start + index % width, length - 1)  # past the window only in slots no valid span filled
    start_byte = tf.gather(byte_offsets[..., 0], start, batch_dims=1)
    end_byte = tf.gather(byte_offsets[..., 1], end, batch_dims=1)
    return (tf.where(valid, score, VERY_NEGATIVE), tf.where(valid, start_byte, -1), tf.where(valid, end_byte, -1))


def _per_question(values, example_index, num_questions, pad_value, width):
    """[W, k] per-window values -> [B, M] per-question rows (M >= width), padded with `pad_value`."""
    rows = tf.RaggedTensor.from_value_rowids(values, example_index, nrows=num_questions).merge_dims(1, 2)
    dense = rows.to_tensor(default_value=pad_value)
    return tf.pad(dense, [[0, 0], [0, tf.maximum(width - tf.shape(dense)[1], 0)]], constant_values=pad_value)


def _drop_duplicate_spans(score, start_byte, end_byte):
    """Scores [B, M] with every repeat of a (start, end) span but its best-scored one set to VERY_NEGATIVE."""
    by_score = tf.argsort(score, axis=1, direction="DESCENDING", stable=True)
    key = tf.gather(tf.cast(start_byte, tf.int64) * (2 ** 32) + tf.cast(end_byte, tf.int64), by_score, batch_dims=1)
    by_key = tf.argsort(key, axis=1, stable=True)
    order = tf.gather(by_score, by_key, batch_dims=1)
    sorted_key = tf.gather(key, by_key, batch_dims=1)
    repeat = tf.concat([tf.zeros_like(sorted_key[:, :1], tf.bool), sorted_key[:, 1:] == sorted_key[:, :-1]], axis=1)
    is_repeat = tf.scatter_nd(
        tf.stack([tf.repeat(tf.range(tf.shape(order)[0])[:, None], tf.shape(order)[1], axis=1), order], axis=-1),
        repeat, tf.shape(order))
    return tf.where(is_repeat, VERY_NEGATIVE, score)


def _char_offsets(contexts, start_byte, end_byte):
    """(text, start_char, end_char) of byte spans [B, N] of `contexts` [B] (characters = UTF-8 code points)."""
    wide = tf.broadcast_to(contexts[:, None], tf.shape(start_byte))
    start = tf.maximum(start_byte, 0)
    text = tf.strings.substr(wide, start, tf.maximum(end_byte - start_byte, 0), unit="BYTE")
    start_char = tf.strings.length(tf.strings.substr(wide, tf.zeros_like(start), start, unit="BYTE"), unit="UTF8_CHAR")
    return text, start_char, start_char + tf.strings.length(text, unit="UTF8_CHAR")


def decode_answers(start_logits, end_logits, byte_offsets, example_index, contexts, n_best_size, max_answer_length,
                   null_score_diff_threshold):
    """Answers of B questions from the span logits of their W windows, in TF ops.

    Args:
        start_logits, end_logits: float32 [W, S].
        byte_offsets: int32 [W, S, 2], byte offsets into the window's context, -1 outside it.
        example_index: int32 [W], the question of each window, non-decreasing.
        contexts: tf.string [B].
        n_best_size, max_answer_length: Python ints; null_score_diff_threshold: float scalar.
    Returns:
        dict of tensors: answer string [B] ("" for no answer), score float32 [B] (best span
        score, the null score when no span is valid), no_answer_probability float32 [B],
        start_char/end_char int32 [B] (-1 for no answer), null_score float32 [B], best_text
        string [B] (the best span whatever the threshold), and the n-best lists nbest_text string
        [B, N], nbest_score float32 [B, N] (VERY_NEGATIVE for empty slots),
        nbest_start_char/nbest_end_char int32 [B, N], with N = n_best_size.
    """
    num_questions = tf.size(contexts)
    window_score, window_start, window_end = _window_top_spans(start_logits, end_logits, byte_offsets, n_best_size,
                                                               max_answer_length)
    score = _per_question(window_score, example_index, num_questions, VERY_NEGATIVE, n_best_size)
    start_byte = _per_question(window_start, example_index, num_questions, -1, n_best_size)
    end_byte = _per_question(window_end, example_index, num_questions, -1, n_best_size)
    score = _drop_duplicate_spans(score, start_byte, end_byte)
    nbest_score, picked = tf.math.top_k(score, k=n_best_size)
    nbest_start = tf.gather(start_byte, picked, batch_dims=1)
    nbest_end = tf.gather(end_byte, picked, batch_dims=1)
    nbest_valid = nbest_score > VERY_NEGATIVE / 2
    text, start_char, end_char = _char_offsets(contexts, nbest_start, nbest_end)
    text = tf.where(nbest_valid, text, "")
    start_char, end_char = tf.where(nbest_valid, start_char, -1), tf.where(nbest_valid, end_char, -1)
    null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], example_index, num_questions)
    best, has_span = nbest_score[:, 0], nbest_valid[:, 0]
    answers = tf.logical_and(has_span, null - best <= null_score_diff_threshold)
    return {
        "answer": tf.where(answers, text[:, 0], ""),
        "score": tf.where(has_span, best, null),
        "no_answer_probability": tf.where(has_span, tf.sigmoid(null - best), 1.0),
        "start_char": tf.where(answers, start_char[:, 0], -1),
        "end_char": tf.where(answers, end_char[:, 0], -1),
        "null_score": null,
        "best_text": text[:, 0],
        "nbest_text": text,
        "nbest_score": nbest_score,
        "nbest_start_char": start_char,
        "nbest_end_char": end_char,
    }


def grouped_logits(logits_model, windows, group_size):
    """Span logits of every window, computed `group_size` windows at a time in order of length.

    `pair_windows` pads every window to max_seq_length. Sorted by length, the windows run through
    the encoder in groups, each cut to its own longest window, so a request spends little time on
    padding. Masked positions change no logit, so the answers equal the padded batch's.

    Args:
        logits_model: {token_ids, segment_ids, padding_mask} int32 [G, L] -> (start, end) [G, L].
        windows: `pair_windows`' output (its MODEL_INPUTS are int32 [W, S], S static; W may be 0).
        group_size: windows per encoder call.
    Returns:
        (start_logits, end_logits), float32 [W, S]; 0 beyond each group's longest window.
    """
    lengths = tf.reduce_sum(windows[PADDING_MASK], axis=1)
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    inputs = {key: tf.gather(windows[key], order) for key in MODEL_INPUTS}
    sorted_lengths = tf.gather(lengths, order)
    count, width = tf.size(order), windows[TOKEN_IDS].shape[1]
    num_groups = (count + group_size - 1) // group_size

    def run_group(index, starts, ends):
        first = index * group_size
        last, longest = tf.minimum(first + group_size, count), sorted_lengths[first]
        start, end = logits_model({key: value[first:last, :longest] for key, value in inputs.items()}, training=False)
        padding = [[0, 0], [0, width - longest]]
        return (index + 1, starts.write(index, tf.pad(tf.cast(start, tf.float32), padding)),
                ends.write(index, tf.pad(tf.cast(end, tf.float32), padding)))

    # Each array ends with an empty [0, S] element, so concat() has an element to join with no windows
    # (eagerly, a concat of zero elements fails).
    arrays = [tf.TensorArray(tf.float32, size=num_groups + 1, infer_shape=False, element_shape=[None, width])
              .write(num_groups, tf.zeros([0, width])) for _ in range(2)]
    _, starts, ends = tf.while_loop(lambda index, *_: index < num_groups, run_group, [0, *arrays])
    unsort = tf.argsort(order)
    return tf.gather(starts.concat(), unsort), tf.gather(ends.concat(), unsort)


def text_errors(name, texts, max_bytes):
    """Why each of `texts` (tf.string [B]) is refused before tokenizing -> (errors, kept), tf.string [B] each.

    errors: "" for a text of at most `max_bytes` bytes of valid UTF-8 that is not only white space
    (as the data readers require); else "`name` is N bytes, above the limit of `max_bytes` bytes
    (data.max_context_bytes)", "`name` is not valid UTF-8" or "`name` is empty or only whitespace".
    kept: the texts with the refused ones replaced by "", so that a text above the limit is not read
    by the UTF-8 check and neither it nor one that is not valid UTF-8 reaches the tokenizer.
    Transcoding UTF-8 to UTF-8 with replacement changes exactly the texts that are not valid UTF-8
    (a U+FFFD in the text stays as it is).
    """
    sizes = tf.strings.length(texts)
    too_long = sizes > max_bytes
    within = tf.where(too_long, "", texts)
    invalid = tf.not_equal(tf.strings.unicode_transcode(within, "UTF-8", "UTF-8", errors="replace"), within)
    valid = tf.where(invalid, "", within)
    blank = tf.strings.regex_full_match(valid, BLANK)
    size_error = tf.strings.join([f"{name} is ", tf.strings.as_string(sizes),
                                  f" bytes, above the limit of {max_bytes} bytes (data.max_context_bytes)"])
    errors = tf.where(too_long, size_error, tf.where(invalid, f"{name} is not valid UTF-8",
                                                     tf.where(blank, f"{name} is {ONLY_WHITESPACE}", "")))
    return errors, tf.where(blank, "", valid)


def token_errors(name, errors, tokens):
    """`errors` (tf.string [B], `text_errors`') with "`name` NO_TOKEN" where a text that passed them
    gave the tokenizer no token (`tokens`: ragged [B, None]); the model would read it as empty, and a
    run's data check, `sources.with_tokens`, refuses it too."""
    return tf.where(tf.logical_and(errors == "", tokens.row_lengths() == 0), f"{name} {NO_TOKEN}", errors)


def join_errors(question_error, context_error):
    """A pair's error, tf.string [B]: the question's, the context's or both ("; "-separated)."""
    both = tf.logical_and(question_error != "", context_error != "")
    return tf.strings.join([question_error, tf.where(both, "; ", ""), context_error])


def checked_tokens(tokenizer, question, context, max_bytes):
    """Checks and tokenizes question/context pairs (tf.string [B] each), each text once.

    Returns:
        (errors, tokens, context): errors, tf.string [B], "" for a pair whose texts pass
        `text_errors` and `token_errors`, else why not (`join_errors`); tokens, `tokenize_pairs`'
        output with the refused pairs' tokens removed, so they read as an empty question about an
        empty context; context, tf.string [B], with the refused pairs' contexts replaced by "".
    """
    question_error, question = text_errors("question", question, max_bytes)
    context_error, context = text_errors("context", context, max_bytes)
    tokens = tokenize_pairs(tokenizer, question, context)
    errors = join_errors(token_errors("question", question_error, tokens["question_ids"]),
                         token_errors("context", context_error, tokens["context_ids"]))
    refused = errors != ""
    return errors, keep_pairs(tokens, tf.logical_not(refused)), tf.where(refused, "", context)


class QAAnswerer(tf.Module):
    """Raw question/context strings -> answers: tokenizer, span logits, `decode_answers`.

    Args:
        logits_model: {token_ids, segment_ids, padding_mask} int32 [G, L] -> (start, end) [G, L].
        tokenizer: the `WordPieceTokenizer` the model was trained with.
        data_config: `DataConfig` (window lengths; max_context_bytes, the longest question or
            context answered); decode_config: `DecodeConfig`.
        window_group_size: windows per encoder call (`export.window_group_size`).
        null_score_diff_threshold: overrides `decode_config`'s (e.g. the dev-tuned one).
    """

    def __init__(self, logits_model, tokenizer, data_config, decode_config, window_group_size,
                 null_score_diff_threshold=None):
        super().__init__(name="road_qa")
        self.logits_model = logits_model
        self.tokenizer = tokenizer
        self.max_seq_length = data_config.max_seq_length
        self.max_query_length = data_config.max_query_length
        self.doc_stride = data_config.doc_stride
        self.max_text_bytes = data_config.max_context_bytes
        self.n_best_size = decode_config.n_best_size
        self.max_answer_length = decode_config.max_answer_length
        threshold = decode_config.null_score_diff_threshold if null_score_diff_threshold is None \
            else null_score_diff_threshold
        self.null_score_diff_threshold = float(threshold)
        self.window_group_size = window_group_size

    def decode(self, question, context):
        """tf.string [B] questions and contexts -> every output of `decode_answers` (n-best included)
        and "error", tf.string [B] (`checked_tokens`: "" for an answered row).

        A row whose question or context is above `max_text_bytes`, not valid UTF-8, blank or without a
        token is answered as an empty question about an empty context ("no answer",
        no_answer_probability 1.0): a text above the limit or not valid UTF-8 is replaced by "" before
        the tokenizer reads it, so a huge text costs nothing, the refused row's tokens are removed
        before windowing, and the other rows of the batch (under TF Serving's batching, other
        clients' questions) are answered as alone."""
        error, tokens, context = checked_tokens(self.tokenizer, question, context, self.max_text_bytes)
        windows = pair_windows(self.tokenizer, tokens, self.max_seq_length, self.max_query_length, self.doc_stride)
        start, end = grouped_logits(self.logits_model, windows, self.window_group_size)
        return {**decode_answers(start, end, windows["byte_offsets"], windows["example_index"], context,
                                 self.n_best_size, self.max_answer_length, self.null_score_diff_threshold),
                "error": error}

    def nbest_function(self):
        """`decode` as a tf.function of ANSWER_INPUTS, for run evaluation. It is not an attribute of
        the module, so an export neither traces nor saves it (a trace costs seconds)."""
        return tf.function(self.decode, input_signature=ANSWER_INPUTS)

    @tf.function(input_signature=ANSWER_INPUTS)
    def answer(self, question, context):
        """The serving signature: the SERVING_KEYS of `decode`, each [B]."""
        decoded = self.decode(question, context)
        return {key: decoded[key] for key in SERVING_KEYS}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=TOKEN_IDS),
                                  tf.TensorSpec([None, None], tf.int32, name=SEGMENT_IDS),
                                  tf.TensorSpec([None, None], tf.int32, name=PADDING_MASK)])
    def token_logits(self, token_ids, segment_ids, padding_mask):
        """Span logits of pre-tokenized windows: {start_logits, end_logits} float32 [B, L]."""
        start, end = self.logits_model(
            {TOKEN_IDS: token_ids, SEGMENT_IDS: segment_ids, PADDING_MASK: padding_mask}, training=False)
        return {"start_logits": tf.cast(start, tf.float32), "end_logits": tf.cast(end, tf.float32)}
