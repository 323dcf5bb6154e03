"""Score prediction files from the command line; prints the metrics as JSON on stdout.

    python -m road_tf.evaluate squad2 DATA.json[.gz] PREDICTIONS.json [--na-probs NA.json] [--na-prob-thresh F]
    python -m road_tf.evaluate classification GOLD PREDICTIONS.json [--num-classes N]

squad2: DATA is a SQuAD 2.0 JSON file; PREDICTIONS is {question id: answer text} ("" = no answer);
NA is {question id: probability of no answer, in [0, 1]}. The output has the official evaluate-v2.0.py keys
(exact, f1, total, HasAns_*, NoAns_*, and best_* with --na-probs); missing predictions are warned
about on stderr and left out, as the official script does.

classification: GOLD is JSON {guid: integer label} when its name ends in .json or .json.gz (any
case), else a TSV of `guid<TAB>integer label` lines (a first line naming the columns guid and
label is a header; blank lines are skipped); PREDICTIONS is {guid: integer label} and must cover
every gold guid; every label lies in [0, N) (N = --num-classes, default 2; pass 3 for MNLI; at
most 1,000,000). The output holds accuracy, macro_f1, f1 (of
class 1, for 0/1 labels) and total; the scores are fractions in [0, 1].

Bad files, among them a JSON object that gives one id twice, exit with status 2 and one line on stderr
naming the file, the record and the problem.
"""

import json
import logging
import os
import sys

from road_tf.data.json_files import parse_json_noting_repeats, read_text
from road_tf.data.squad import read_squad_json
from road_tf.data.tsv import read_table
from road_tf.errors import (ArgumentParser, DataError, RoadError, bounded, cli_main, decimal_integer,
                            finite_float, is_finite_number, is_integer, nonempty, shown, whole_number)
from road_tf.evaluation.classification import classification_metrics
from road_tf.evaluation.squad_metric import squad_v2_metrics

MAX_CLASSES = 1_000_000
THRESHOLD = bounded(finite_float, 0.0, 1.0, "a number in [0, 1]")
NUM_CLASSES = bounded(whole_number, 2, MAX_CLASSES, f"an integer in [2, {MAX_CLASSES}]")
"""The argparse types of --na-prob-thresh and --num-classes."""


def _parser():
    """The argparse parser with the squad2 and classification subcommands."""
    parser = ArgumentParser(prog="python -m road_tf.evaluate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    squad = commands.add_parser("squad2", help="SQuAD 2.0 exact match and F1, as the official script")
    squad.add_argument("data", type=nonempty, help="SQuAD 2.0 JSON file (.json or .json.gz)")
    squad.add_argument("predictions", type=nonempty, help="JSON {question id: answer text}")
    squad.add_argument("--na-probs", type=nonempty, help="JSON {question id: probability of no answer}")
    squad.add_argument("--na-prob-thresh", type=THRESHOLD, metavar="P",
                       help='with --na-probs: predict "" where the no-answer probability exceeds P, in [0, 1] '
                            '(default 1.0)')
    classify = commands.add_parser("classification", help="accuracy, macro-F1 and binary F1")
    classify.add_argument("gold", type=nonempty, help="JSON {guid: label} (.json/.json.gz) or TSV `guid<TAB>label`")
    classify.add_argument("predictions", type=nonempty, help="JSON {guid: integer label}")
    classify.add_argument("--num-classes", type=NUM_CLASSES, default=2, metavar="N",
                          help="labels lie in [0, N) (default 2; MNLI has 3)")
    return parser


def _read_mapping(path, describe, is_value):
    """Reads a JSON object whose values pass `is_value`; DataError names the first bad entry or the
    first id the object holds twice (JSON keeps the last silently: two answers to one question)."""
    mapping, repeated = parse_json_noting_repeats(read_text(path), path)
    if not isinstance(mapping, dict):
        raise DataError(path, f"must be a JSON object mapping ids to {describe}, got {type(mapping).__name__}")
    for key, value in mapping.items():
        if not is_value(value):
            raise DataError(path, f"value must be {describe}, got {json.dumps(value)[:60]}", record=key)
    if repeated:
        raise DataError(path, f"the id is given {repeated[1]} times; give each id once", record=repeated[0])
    return mapping


def _is_probability(value):
    return is_finite_number(value) and 0.0 <= value <= 1.0


def _score_squad(args):
    """Returns the SQuAD 2.0 metric dict for the squad2 subcommand."""
    if args.na_prob_thresh is not None and not args.na_probs:
        raise RoadError("--na-prob-thresh: thresholds the no-answer probabilities of --na-probs; give both or neither")
    examples = read_squad_json(args.data)
    if not examples:
        raise DataError(args.data, "holds no questions")
    predictions = _read_mapping(args.predictions, "a string (the answer text)", lambda value: isinstance(value, str))
    predicted = [example.qid for example in examples if example.qid in predictions]
    if not predicted:
        raise DataError(args.predictions, f"has no prediction for any of the {len(examples)} questions in {args.data}")
    na_probs = None
    if args.na_probs:
        na_probs = _read_mapping(args.na_probs, "a finite number in [0, 1] (the no-answer probability)", _is_probability)
        unprobed = [qid for qid in predicted if qid not in na_probs]
        if unprobed:
            raise DataError(args.na_probs, f"has no no-answer probability for this predicted question "
                                           f"({len(unprobed)} missing in all)", record=unprobed[0])
    threshold = 1.0 if args.na_prob_thresh is None else args.na_prob_thresh
    return squad_v2_metrics(examples, predictions, na_probs, threshold)


def _read_gold_labels(path, num_classes):
    """{guid: int label in [0, num_classes)} from a JSON object or a `guid<TAB>label` TSV (optional
    header line); DataError when it holds no labels."""
    describe, is_label = _label_check(num_classes)
    if path.lower().endswith((".json", ".json.gz")):
        labels = _read_mapping(path, describe, is_label)
    else:
        labels = _read_tsv_labels(path, describe, is_label)
    if not labels:
        raise DataError(path, "has no labels")
    return labels


def _read_tsv_labels(path, describe, is_label):
    """{guid: int label} of a `guid<TAB>label` TSV (`road_tf.data.tsv.read_table`: lines end at \\n
    only, a guid is given once) whose labels pass `is_label` (`describe` says what they must be)."""

    def parse(record, number):
        label = record["label"].strip()
        try:
            value = decimal_integer(label)
        except OverflowError:
            value = -1  # beyond 64 bits: out of every label range
        if value is None:
            raise DataError(path, f"label must be an integer, got {shown(label)}", record=f"line {number}")
        if not is_label(value):
            raise DataError(path, f"label must be {describe}, got {shown(label)}", record=f"line {number}")
        return record["guid"], value

    return dict(read_table(path, parse, ["guid", "label"], optional_header=True, id_column="guid"))


def _label_check(num_classes):
    """(description, test) of a class label: an integer in [0, num_classes)."""
    return (f"an integer label in [0, {num_classes}) (see --num-classes)",
            lambda value: is_integer(value) and 0 <= value < num_classes)


def _score_classification(args):
    """Returns the classification metric dict for the classification subcommand."""
    gold = _read_gold_labels(args.gold, args.num_classes)
    predictions = _read_mapping(args.predictions, *_label_check(args.num_classes))
    missing = [guid for guid in gold if guid not in predictions]
    if missing:
        raise DataError(args.predictions, f"has no prediction for this guid of {args.gold} "
                                          f"({len(missing)} missing in all)", record=missing[0])
    guids = list(gold)
    return classification_metrics([gold[guid] for guid in guids], [predictions[guid] for guid in guids])


@cli_main
def main(argv=None):
    """Parses `argv`, scores, and prints the metrics as indented JSON."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    scorer = _score_squad if args.command == "squad2" else _score_classification
    _print_metrics(scorer(args))
    return 0


def _print_metrics(metrics):
    """Prints `metrics` as indented JSON on stdout; RoadError when stdout cannot take it (a full disk,
    /dev/full, a closed pipe), with stdout then pointed at /dev/null so exit does not fail again."""
    try:
        print(json.dumps(metrics, indent=2), flush=True)
    except OSError as error:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise RoadError(f"standard output: cannot write the metrics ({error.strerror or error})") from None


if __name__ == "__main__":
    sys.exit(main())
