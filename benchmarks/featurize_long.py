"""Featurization cost on long contexts: does it grow linearly with the context's length?

    .venv/bin/python benchmarks/featurize_long.py [--rounds 3]

One question over a 64 KB and over a 1 MB context (words drawn with a fixed seed from the MiniLM
vocabulary), featurized with the training defaults (128-token windows, stride 64, questions cut
at 32 tokens) after one warm-up call that traces the window graph.
Result: value = seconds per MB at 1 MB ÷ seconds per MB at 64 KB (goal ≤ 1.5: linear cost gives
about 1.0, quadratic cost 16), medians of interleaved timed rounds. `rss_growth_mb` is how far the
process's peak resident memory rose during the first 1 MB call.
"""

import random
import resource

import common

from road_tf.data.examples import Answer, QAExample  # noqa: E402
from road_tf.data.features import featurize_qa  # noqa: E402
from road_tf.data.tokenizer import load_tokenizer  # noqa: E402
from road_tf.errors import ArgumentParser, cli_main, whole_number  # noqa: E402

SMALL, LARGE = 64_000, 1_000_000
MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE = 128, 32, 64


def long_question(vocabulary, size, seed=0):
    """A QAExample whose context is `size` bytes of vocabulary words; the answer is a word in the middle."""
    rng = random.Random(seed)
    words, length = [], 0
    while length < size:
        word = rng.choice(vocabulary)
        words.append(word)
        length += len(word) + 1
    context = " ".join(words)[:size]
    middle = context.index(" ", size // 2) + 1
    answer = context[middle:context.index(" ", middle)]
    return QAExample("long", "which word is in the middle?", context, (Answer(answer, middle),))


def peak_rss_mb():
    """This process's peak resident set size so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@cli_main
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--rounds", type=whole_number, default=3,
                        help=f"timed rounds of each size (default 3, at most {common.MAX_REPEATS})")
    args = common.parse_flags(parser, argv, bounds={"rounds": (1, common.MAX_REPEATS)})

    tokenizer = load_tokenizer("minilm")
    vocabulary = [piece for piece in tokenizer.vocab if piece.isalpha()]
    small, large = [long_question(vocabulary, SMALL)], [long_question(vocabulary, LARGE)]

    def featurize(examples):
        return featurize_qa(tokenizer, examples, MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE)

    small_windows = len(featurize(small)["token_ids"])
    before = peak_rss_mb()
    large_windows = len(featurize(large)["token_ids"])
    rss_growth = peak_rss_mb() - before
    times = common.interleaved_times({"small": lambda: featurize(small), "large": lambda: featurize(large)},
                                     rounds=args.rounds, warmup=0)
    small_per_mb = common.median(times["small"]) / (SMALL / 1e6)
    large_per_mb = common.median(times["large"]) / (LARGE / 1e6)
    print(f"64 KB: {small_windows} windows in {[round(t, 3) for t in times['small']]} s; "
          f"1 MB: {large_windows} windows in {[round(t, 3) for t in times['large']]} s")
    common.result_line(
        "featurize_long", large_per_mb / small_per_mb, 1.5, "lower", "ratio of seconds per MB (1 MB / 64 KB)",
        small_seconds_per_mb=round(small_per_mb, 4), large_seconds_per_mb=round(large_per_mb, 4),
        small_windows=small_windows, large_windows=large_windows, rss_growth_mb=round(rss_growth, 1),
        rounds=args.rounds,
    )


if __name__ == "__main__":
    main()
