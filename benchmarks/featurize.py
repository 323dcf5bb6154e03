"""SQuAD featurization throughput: road_tf's `featurize_qa` vs a Hugging Face fast-tokenizer featurizer.

    .venv/bin/python benchmarks/featurize.py [--rounds 5] [--limit N]

Both turn the same questions into 384-token windows (stride 128, questions cut at 64 tokens by
road_tf) with start/end labels and per-token character offsets, as NumPy arrays. The baseline is
the usual `prepare_train_features` recipe: one call of the tokenizer per batch of 1,000 questions
with `truncation="only_second", return_overflowing_tokens=True, return_offsets_mapping=True,
padding="max_length"`, then a Python loop mapping each answer to token positions.

Data: the real SQuAD 2.0 dev public half (../shared) when present, else a synthetic SQuAD split
(3,000 questions from `road_tf.data.synthetic.generate`).
Result: value = road_tf features/s ÷ Hugging Face features/s (goal ≥ 1.0), medians of
interleaved timed rounds after one warm-up round each. `hf_tokenizer_call_seconds` times the
baseline's tokenizer calls alone (no labels, no arrays): the floor of this recipe.
"""

import os
import tempfile

import common

# Without PyTorch, transformers prints an advisory line on import; errors here must stay one line.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
from transformers import BertTokenizerFast  # noqa: E402  (imported before TensorFlow: importing it after TensorFlow has crashed this stack)

import numpy as np  # noqa: E402

from road_tf.data.features import featurize_qa  # noqa: E402
from road_tf.data.squad import read_squad_json  # noqa: E402
from road_tf.data.synthetic import generate  # noqa: E402
from road_tf.data.tokenizer import load_tokenizer  # noqa: E402
from road_tf.errors import ArgumentParser, cli_main, whole_number  # noqa: E402
from road_tf.minilm import minilm_path  # noqa: E402

MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 384, 128, 64
SQUAD_DEV = "data/squad2-dev/squad2-dev-public.json.gz"


def load_examples(limit):
    """(QAExample list, name of the source): the real public half, else a synthetic SQuAD split."""
    path = common.shared_file(SQUAD_DEV)
    if path is not None:
        examples, source = read_squad_json(path), "squad2-dev-public"
    else:
        with tempfile.TemporaryDirectory(prefix="road_tf_bench_") as folder:
            examples, source = read_squad_json(generate(folder, train_size=3000, dev_size=200)["squad"]["train"]), "synthetic"
    return (examples[:limit] if limit else examples), source


def hf_window_labels(offsets, sequence_ids, example):
    """Start/end token of the first answer in one Hugging Face window, (0, 0) when it is absent.

    Args:
        offsets: list of (start, end) character offsets per token.
        sequence_ids: list per token: 0 question, 1 context, None special/padding.
        example: the window's QAExample.
    """
    if not example.answers:
        return 0, 0
    answer = example.answers[0]
    start_char, end_char = answer.start, answer.start + len(answer.text)
    first = sequence_ids.index(1)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    while first <= last and offsets[first][0] <= start_char:
        first += 1
    while offsets[last][1] >= end_char:
        last -= 1
    return first - 1, last + 1


def hf_encode(tokenizer, examples):
    """One Hugging Face tokenizer call over question/context pairs, as `prepare_train_features` makes it."""
    return tokenizer(
        [example.question.lstrip() for example in examples], [example.context for example in examples],
        truncation="only_second", max_length=MAX_SEQ_LENGTH, stride=DOC_STRIDE,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
    )


def hf_tokenizer_calls(tokenizer, examples, batch_size=1000):
    """Only the tokenizer calls of `hf_featurize` (no labels, no arrays)."""
    for begin in range(0, len(examples), batch_size):
        hf_encode(tokenizer, examples[begin:begin + batch_size])


def hf_featurize(tokenizer, examples, batch_size=1000):
    """The Hugging Face baseline: windows, labels and character offsets for every question.

    Returns:
        dict of int32 arrays over W windows: input_ids/token_type_ids/attention_mask [W, 384],
        start_positions/end_positions/example_index [W], char_offsets [W, 384, 2] (-1 outside
        the context), the same content as `featurize_qa`.
    """
    columns = {key: [] for key in ("input_ids", "token_type_ids", "attention_mask", "start_positions",
                                   "end_positions", "example_index", "char_offsets")}
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin:begin + batch_size]
        encoded = hf_encode(tokenizer, chunk)
        for window, local_index in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence_ids = encoded.sequence_ids(window)
            offsets = encoded["offset_mapping"][window]
            start, end = hf_window_labels(offsets, sequence_ids, chunk[local_index])
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                columns[key].append(encoded[key][window])
            columns["start_positions"].append(start)
            columns["end_positions"].append(end)
            columns["example_index"].append(begin + local_index)
            columns["char_offsets"].append([pair if kind == 1 else (-1, -1) for pair, kind in zip(offsets, sequence_ids)])
    return {key: np.asarray(values, dtype=np.int32) for key, values in columns.items()}


def road_featurize(tokenizer, examples):
    """road_tf's featurizer with the standard SQuAD lengths; dict of arrays (see `featurize_qa`)."""
    return featurize_qa(tokenizer, examples, MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE)


def agreement(road, hf):
    """How far the two featurizers agree, over questions that get one window from each.

    Returns:
        (share of those questions with identical token ids, share of the identical ones whose
        start/end labels are identical too).
    """
    def single_windows(features):
        index, counts = np.unique(features["example_index"], return_counts=True)
        rows = {example: row for row, example in enumerate(features["example_index"])}
        return {example: rows[example] for example in index[counts == 1]}

    road_rows, hf_rows = single_windows(road), single_windows(hf)
    shared = sorted(set(road_rows) & set(hf_rows))
    same_ids = [e for e in shared if np.array_equal(road["token_ids"][road_rows[e]], hf["input_ids"][hf_rows[e]])]
    same_labels = [
        e for e in same_ids
        if (road["start_positions"][road_rows[e]], road["end_positions"][road_rows[e]])
        == (hf["start_positions"][hf_rows[e]], hf["end_positions"][hf_rows[e]])
    ]
    return len(same_ids) / max(len(shared), 1), len(same_labels) / max(len(same_ids), 1)


@cli_main
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--rounds", type=whole_number, default=5,
                        help=f"timed rounds of each featurizer (default 5, at most {common.MAX_REPEATS})")
    parser.add_argument("--limit", type=whole_number, default=0, help="use only the first N questions (0: all)")
    args = common.parse_flags(parser, argv, bounds={"rounds": (1, common.MAX_REPEATS), "limit": (0, None)})

    examples, source = load_examples(args.limit)
    road_tokenizer = load_tokenizer("minilm")
    hf_tokenizer = BertTokenizerFast(tokenizer_file=str(minilm_path() / "tokenizer.json"))
    road = road_featurize(road_tokenizer, examples)  # also the warm-up of both featurizers
    hf = hf_featurize(hf_tokenizer, examples)
    times = common.interleaved_times(
        {"road_tf": lambda: road_featurize(road_tokenizer, examples), "hf": lambda: hf_featurize(hf_tokenizer, examples),
         "hf_call": lambda: hf_tokenizer_calls(hf_tokenizer, examples)},
        rounds=args.rounds, warmup=0,
    )
    road_seconds, hf_seconds = common.median(times["road_tf"]), common.median(times["hf"])
    road_rate, hf_rate = len(road["token_ids"]) / road_seconds, len(hf["input_ids"]) / hf_seconds
    same_ids, same_labels = agreement(road, hf)
    print(f"{source}: {len(examples)} questions; road_tf {len(road['token_ids'])} windows in "
          f"{[round(t, 3) for t in times['road_tf']]} s, HF {len(hf['input_ids'])} windows in "
          f"{[round(t, 3) for t in times['hf']]} s")
    common.result_line(
        "featurize", road_rate / hf_rate, 1.0, "higher", "ratio of features/s (road_tf / HF)",
        data=source, questions=len(examples), road_tf_features=len(road["token_ids"]),
        hf_features=len(hf["input_ids"]), road_tf_seconds=round(road_seconds, 4), hf_seconds=round(hf_seconds, 4),
        road_tf_features_per_s=round(road_rate, 1), hf_features_per_s=round(hf_rate, 1),
        examples_per_s_ratio=round(hf_seconds / road_seconds, 4),
        hf_tokenizer_call_seconds=round(common.median(times["hf_call"]), 4),
        single_window_same_ids=round(same_ids, 4), same_labels_where_ids_match=round(same_labels, 4),
        rounds=args.rounds,
    )


if __name__ == "__main__":
    main()
