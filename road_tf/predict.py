"""python -m road_tf.predict: answer a SQuAD 2.0 file with an exported model.

    python -m road_tf.predict --model saved_models/NAME/VERSION --data dev.json[.gz] \\
        --output preds.json [--na-probs na.json] [--batch-size 32]

`--model` is a SavedModel version folder, a model folder (its newest version is used) or a
finished run directory (the version that run exported). Questions go through the SavedModel's
`serving_default` signature in batches, in file order, the same batches run evaluation uses, so
`python -m road_tf.evaluate squad2 dev.json preds.json --na-probs na.json` reproduces the run's
metrics.json. Output files are written only when every question has been answered; a question the
model refuses (its "error" output, e.g. a context above the data.max_context_bytes it was exported
with) stops predict with one line naming it and the model's reason.
"""

import json
import os
import pathlib
import sys

from road_tf.config import is_run_directory
from road_tf.data.squad import read_squad_json
from road_tf.errors import (ArgumentParser, DataError, RoadError, cli_main, first_line, nonempty, one_line_when_stopped,
                            positive_integer, tf_error_summary)
from road_tf.export import finished_run_metrics
from road_tf.files import (SAVED_MODEL_FILE, check_distinct, check_writable_file, entry_kind, holds_saved_model,
                           lies_within, newest_version, require_folder, version_number, versions, write_data_files)

DEFAULT_BATCH_SIZE = 32
OUTPUTS = {"answer": "string", "no_answer_probability": "float32"}
"""The serving_default outputs predict writes, each one value per question, with the name of its
dtype (`tf.DType.name`)."""
ERROR = "error"
"""The serving_default output (one string per question) that says why the model refuses a question,
"" for a question it answers. predict reads it when the model has it (exports made before it existed
answer every question)."""


def parse_args(argv):
    parser = ArgumentParser(prog="python -m road_tf.predict",
                            description="Answer the questions of a SQuAD 2.0 file with an exported model.")
    parser.add_argument("--model", type=nonempty, required=True,
                        help="SavedModel version folder, model folder (newest version) or finished run directory")
    parser.add_argument("--data", type=nonempty, required=True, help="SQuAD 2.0 JSON file (.json or .json.gz)")
    parser.add_argument("--output", type=nonempty, required=True,
                        help="predictions JSON to write: {question id: answer} (gzipped when it ends in .gz)")
    parser.add_argument("--na-probs", type=nonempty,
                        help="no-answer probabilities JSON to write: {question id: probability} (gzipped when it ends in .gz)")
    parser.add_argument("--batch-size", type=positive_integer, default=DEFAULT_BATCH_SIZE,
                        help=f"questions per model call (default {DEFAULT_BATCH_SIZE})")
    return parser.parse_args(argv)


def resolve_model(path):
    """The SavedModel folder that `--model` names; RoadError says why when there is none."""
    path = pathlib.Path(path)
    require_folder(path, f"--model {path}")
    if holds_saved_model(path):
        return path
    if is_run_directory(path):
        exported = finished_run_metrics(path, "--model")["export"]
        if not exported:
            raise RoadError(f"--model {path}: this run exported no model (export.enabled was false?); "
                            "export it with python -m road_tf.export --run-dir")
        if not holds_saved_model(exported):
            raise RoadError(f"--model {path}: its metrics.json names no exported SavedModel folder "
                            f"(export: {json.dumps(exported)[:80]})")
        return pathlib.Path(exported)
    version = newest_version(path)
    if version is None:
        raise RoadError(f"--model {path}: not a SavedModel ({SAVED_MODEL_FILE} missing), a model folder with "
                        "numbered versions, or a run directory")
    if not holds_saved_model(version):
        raise RoadError(incomplete_version_problem(path, version))
    return version


def incomplete_version_problem(model_dir, version):
    """What is wrong when the newest version folder `version` of the model folder `model_dir` holds no
    SAVED_MODEL_FILE (a copy or export not finished, or damaged), naming the newest version that
    holds one, which servers keep serving meanwhile."""
    complete = [path for _, path in sorted(versions(model_dir).items()) if holds_saved_model(path)]
    hint = f"; the newest version that holds one is {complete[-1]}" if complete else ""
    return (f"--model {model_dir}: its newest version, {version.name}, holds no {SAVED_MODEL_FILE} (a copy or "
            f"export not finished, or a damaged one){hint}")


def check_run_files_kept(written, run):
    """RoadError when a file to write ({flag: path}) would replace a file of the run directory `run`
    (its config.yaml, metrics.json, weights, logs, ...): new files may go into a run, none is replaced."""
    for flag, path in written.items():
        if lies_within(path, run) and entry_kind(path) == "a file":
            name = os.path.relpath(os.path.realpath(path), os.path.realpath(run))
            raise RoadError(f"{flag} {path}: is the --model run's {name} file, which it would overwrite")


def model_folder_of(folder):
    """The model folder of the SavedModel folder `folder`, symbolic links resolved: its parent when
    its name is a version number (`version_number`), else None (a SavedModel folder on its own)."""
    real = pathlib.Path(os.path.realpath(folder))
    return real.parent if version_number(real.name) is not None else None


def among_versions(path, model_dir):
    """Whether `path` lies directly in the model folder `model_dir` (beside its versions) or in one
    of its entries named by a version number, symbolic links resolved; not in its other subfolders."""
    real = pathlib.Path(os.path.realpath(path))
    if not lies_within(real, model_dir):
        return False
    parts = real.relative_to(os.path.realpath(model_dir)).parts
    return len(parts) <= 1 or version_number(parts[0]) is not None


def check_outside_model(written, folder):
    """RoadError when a file to write ({flag: path}) lies in the SavedModel folder `folder`, whose
    files (saved_model.pb, variables/, ...) it would replace or whose served version it would change,
    or elsewhere among the versions of its model folder (`model_folder_of`, `among_versions`), which a
    server reads: it would replace another version's file, or take a version number for its name (a
    file `2` beside version 1, and the next export skipped to 3)."""
    model_dir = model_folder_of(folder)
    for flag, path in written.items():
        if lies_within(path, folder):
            raise RoadError(f"{flag} {path}: lies in the SavedModel folder {folder} that --model reads; "
                            "write it elsewhere")
        if model_dir and among_versions(path, model_dir):
            raise RoadError(f"{flag} {path}: lies in the model folder {model_dir} that holds the SavedModel --model "
                            "reads, whose versions a server serves; write it elsewhere")


def load_answer_fn(folder):
    """The `serving_default` signature of a SavedModel as (question [B], context [B]) -> outputs."""
    import tensorflow as tf  # TensorFlow loads here, once the checks passed
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

    from road_tf.evaluation.answerer import ANSWER_INPUTS

    try:
        loaded = tf.saved_model.load(str(folder))
        signature = loaded.signatures.get("serving_default")
    except Exception as error:  # damaged files raise many types: IndexError, RuntimeError (an unknown op), ...
        raise RoadError(f"--model {folder}: cannot load the SavedModel's serving_default signature "
                        f"({first_line(error) or type(error).__name__})") from None
    if signature is None:
        names = ", ".join(sorted(loaded.signatures)) or "none"
        raise RoadError(f"--model {folder}: the SavedModel has no serving_default signature (its signatures: {names}); "
                        "not a road_tf QA model")
    inputs = {name: (spec.dtype, spec.shape) for name, spec in signature.structured_input_signature[1].items()}
    if inputs != {spec.name: (spec.dtype, spec.shape) for spec in ANSWER_INPUTS}:
        taken = ", ".join(f"{name}: {dtype.name} of shape {shape}" for name, (dtype, shape) in sorted(inputs.items()))
        raise RoadError(f"--model {folder}: serving_default takes {taken or 'nothing'}, not question and context "
                        "strings, one per question; not a road_tf QA model")
    outputs = {name: (spec.dtype.name, spec.shape.rank) for name, spec in signature.structured_outputs.items()}
    read = {**OUTPUTS, **({ERROR: "string"} if ERROR in outputs else {})}
    for name, dtype in read.items():
        if outputs.get(name) != (dtype, 1):
            raise RoadError(f"--model {folder}: serving_default has no output {name!r} of one {dtype} per "
                            "question; not a road_tf QA model")

    def answer_fn(question, context):
        return checked_outputs(folder, signature(question=question, context=context), len(question), read)

    return answer_fn, loaded


def checked_outputs(folder, outputs, rows, read):
    """The outputs named in `read` (OUTPUTS, and ERROR when the model has it; predict reads no
    others) of the serving_default `outputs` for `rows` questions; RoadError when they do not hold
    one value per question or a no-answer probability is not a number in [0, 1] (`answer_all`
    checks that the answers are UTF-8, where they are decoded)."""
    for name in read:
        if outputs[name].shape != (rows,):
            raise RoadError(f"--model {folder}: serving_default returned {name} of shape "
                            f"{outputs[name].shape.as_list()} for {rows} questions")
    probability = outputs["no_answer_probability"].numpy()
    outside = probability[~((probability >= 0) & (probability <= 1))]  # NaN fails both comparisons
    if outside.size:
        raise RoadError(f"--model {folder}: serving_default returned the no-answer probability {outside[0]}, "
                        "not a number in [0, 1]")
    return {name: outputs[name] for name in read}


def answer_all(answer_fn, folder, data, examples, batch_size):
    """`answer_questions` over `examples` (read from `data`) with a progress line: {"answer": str [N],
    "no_answer_probability": float32 [N]} (and ERROR, str [N], when the model has it).

    Raises:
        RoadError: the model fails on a batch (a tf.errors.OpError, e.g. a failed assertion in its
            graph), naming the batch's first and last questions; an answer is not UTF-8 (found as its
            batch is decoded).
        DataError: the model refuses a question (a non-empty ERROR, e.g. a context above its
            data.max_context_bytes); it names the first one, found as its batch arrives.
    """
    import tensorflow as tf

    from road_tf.evaluation.qa_eval import answer_questions

    asked = 0

    def answer_batch(question, context):
        nonlocal asked
        try:
            outputs = answer_fn(question, context)
        except tf.errors.OpError as error:
            first, last = examples[asked].qid, examples[asked + len(question) - 1].qid
            batch = f"question {first}" if first == last else f"questions {first} to {last}"
            raise RoadError(f"--model {folder}: serving_default failed on {batch}: "
                            f"{tf_error_summary(error.message)}") from None
        for row, error in enumerate(outputs[ERROR].numpy() if ERROR in outputs else []):
            if error:
                raise DataError(data, f"--model {folder} refuses it: {error.decode('utf-8', errors='replace')}",
                                examples[asked + row].qid)
        asked += len(question)
        return outputs

    try:
        return answer_questions(answer_batch, examples, batch_size, progress=True)
    except UnicodeDecodeError:
        raise RoadError(f"--model {folder}: serving_default returned an answer that is not UTF-8") from None


@cli_main
def main(argv=None):
    args = parse_args(argv)
    with one_line_when_stopped(lambda: "nothing was written"):
        return answer_file(args)


def answer_file(args):
    """Answers the questions of `args.data` with the model `args.model` (the parsed flags) and writes
    the answers (and no-answer probabilities) once all are answered -> 0."""
    written = {"--output": args.output, **({"--na-probs": args.na_probs} if args.na_probs else {})}
    check_distinct(written, {"--data": args.data})
    if is_run_directory(args.model):
        check_run_files_kept(written, args.model)
    for flag, path in written.items():
        check_writable_file(path, flag)
    folder = resolve_model(args.model)
    check_outside_model(written, folder)
    examples = read_squad_json(args.data)
    if not examples:
        raise RoadError(f"{args.data}: no questions to answer")
    answer_fn, _ = load_answer_fn(folder)
    outputs = answer_all(answer_fn, folder, args.data, examples, args.batch_size)
    from road_tf.evaluation.qa_eval import squad_outputs
    from road_tf.saved_model import METRICS_FILE

    predictions, na_probs = squad_outputs(examples, outputs)
    texts = {args.output: json.dumps(predictions, indent=2) + "\n"}
    if args.na_probs:
        texts[args.na_probs] = json.dumps(na_probs, indent=2) + "\n"
    write_data_files(texts)  # both or neither: a failure must not leave new answers beside old probabilities
    recorded = folder / METRICS_FILE
    print(f"answered {len(examples)} questions with {folder}"
          + (f" (its recorded dev metrics: {recorded})" if recorded.is_file() else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
