"""python -m pipelines.local_runner: run the TFX pipeline on this machine (LocalDagRunner, sqlite MLMD).

Paths live here only. `--config`/`--set` pick the road_tf run configuration exactly as
`python -m road_tf.train` does; `--data` names the questions (see pipelines/data.py). Pipeline
state and metadata go under `--root` (default runs/tfx/); blessed models are pushed to
`--serving-model-dir` (default saved_models/road_tfx/<version>/). Caching is on: an unchanged
component is not rerun; `--no-cache` reruns everything.
"""

import contextlib
import io
import pathlib
import sys
import tempfile
import warnings

from pipelines import configs
from road_tf import config as config_lib
from road_tf.data.vocab import check_encoder_vocabularies
from road_tf.errors import (ArgumentParser, RoadError, cli_main, finite_float, first_control_character, nonempty,
                            positive_integer, utf8_problem)
from road_tf.files import (check_distinct, check_folder, check_model_folder, check_writable_dir, file_head, lies_within,
                           same_file, versions)

REPO = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("synthetic", "tfds")
"""The --data values that name a source, not a file."""
ROOT_FOLDERS = ("data", "data/synthetic", "data/split", "data/examples", "data/examples/Split-train",
                "data/examples/Split-eval", "pipeline")
"""The folders a run writes under --root."""
METADATA_FILE, SQLITE_HEADER = "metadata.db", b"SQLite format 3\x00"
EXAMPLE_FILES = ("data/examples/Split-train/data.tfrecord", "data/examples/Split-eval/data.tfrecord")
"""The files every run writes under --root (the ImportExampleGen input)."""
SPLIT_FILES = ("data/split/train.json", "data/split/eval.json")
"""The files a run that splits one --data file (no --eval-data) writes under --root: its two halves."""


def add_pipeline_arguments(parser):
    """The flags shared with the Kubeflow runner: recipe, overrides, gate and Beam settings."""
    parser.add_argument("--config", type=nonempty, help="road_tf recipe name (e.g. demo) or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one road_tf field, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--margin", type=finite_float, default=configs.NO_ANSWER_MARGIN,
                        help=f"gate floor: dev F1 must exceed the always-no-answer F1 by this many points "
                             f"(default {configs.NO_ANSWER_MARGIN})")
    parser.add_argument("--tolerance", type=finite_float, default=configs.REGRESSION_TOLERANCE,
                        help=f"gate: dev F1 may trail the latest blessed model's by at most this many points "
                             f"(default {configs.REGRESSION_TOLERANCE})")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[], metavar="FLAG",
                        help="Beam flag for the data components, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component (TFX caching off)")


FLAG_NAMES = {"overrides": "--set", "beam_args": "--beam-arg"}
"""Flags whose attribute is not named after the flag."""


def flag_name(dest):
    """The command-line flag of the argparse attribute `dest` ("serving_model_dir" -> "--serving-model-dir")."""
    return FLAG_NAMES.get(dest, "--" + dest.replace("_", "-"))


def argv_bytes(text):
    """The bytes a command-line string came from (Python's surrogate escapes turned back into them)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escape: only from Python callers
        return text.encode("utf-8", "backslashreplace")


def check_flags_utf8(args):
    """RoadError naming the flag for any string value (or string in a list) of `args` that is not
    UTF-8: Python passes such argv bytes on as surrogate escapes, which TFX's protos, the compiled
    pipeline spec (JSON) and MLMD cannot hold."""
    for dest, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            problem = isinstance(text, str) and utf8_problem(text)
            if problem:
                raise RoadError(f"{flag_name(dest)} {argv_bytes(text)!r}: {problem}")


def _beam_options():
    """Beam's PipelineOptions and StandardOptions (importing Beam takes ~2 s and prints Google client
    libraries' FutureWarnings, kept off stderr here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    return PipelineOptions, StandardOptions


def check_beam_args(beam_args):
    """RoadError unless every --beam-arg is a flag (Beam ignores other words silently) without
    control characters, that Beam's own option parser accepts (a flag Beam knows must have a value
    of its type or among its choices: --direct_num_workers=abc is refused), and any --runner is one
    Beam knows by name or a runner class's full module path (which Beam imports when the pipeline
    runs, in the image: it is not imported here). Flags Beam does not know are left to it: plugins
    in the image may define them."""
    for beam_arg in beam_args:
        if not (isinstance(beam_arg, str) and beam_arg.startswith("--") and len(beam_arg) > 2):
            raise RoadError(f"--beam-arg {beam_arg!r}: not a Beam flag; write it as --beam-arg=--name=value")
        control = first_control_character(beam_arg)
        if control:
            raise RoadError(f"--beam-arg {beam_arg!r}: holds a control character ({control!r})")
    if not beam_args:
        return
    pipeline_options, standard_options = _beam_options()
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(io.StringIO()):
            options = pipeline_options(list(beam_args)).get_all_options(retain_unknown_options=True)
    except SystemExit as stop:  # Beam's argparse parser prints its usage and exits
        lines = messages.getvalue().strip().splitlines()
        reason = lines[-1].split("error: ", 1)[-1] if lines and stop.code else "asks Beam for its help"
        raise RoadError(f"--beam-arg: refused by Beam: {reason}") from None
    runner = options.get("runner")
    if runner is not None:
        # As apache_beam.runners.runner.create_runner resolves the name, without importing the runner.
        known = {path.rsplit(".", 1)[-1].lower(): path for path in standard_options.ALL_KNOWN_RUNNERS}
        if "." not in known.get(runner.lower(), known.get(runner.lower() + "runner", runner)):
            raise RoadError(f"--beam-arg --runner={runner}: not a Beam runner (Beam knows "
                            f"{', '.join(standard_options.KNOWN_RUNNER_NAMES)}, or give a runner class's full path)")


def check_pipeline_flags(args):
    """RoadError unless every string flag is UTF-8 text and every --beam-arg passes `check_beam_args`
    (the gate's --margin and --tolerance are finite numbers by their argparse type)."""
    check_flags_utf8(args)
    check_beam_args(args.beam_args)


def resolve_config(args):
    """The road_tf Config of `--config` and `--set`, as road_tf.train resolves it (teachers named by
    their run made concrete), checked with the settings the Trainer lays over it
    (`configs.trainer_config`), so that a conflict stops the run before any component starts."""
    config = config_lib.load_recipe(args.config, args.overrides)[1]
    with tempfile.TemporaryDirectory(prefix="road_tfx-check-") as scratch:
        configs.trainer_config(config_lib.dump_yaml(config), pathlib.Path(scratch))
    return config


def check_inputs_kept(args, root):
    """RoadError when a file the run writes under `root` (EXAMPLE_FILES, and SPLIT_FILES when it
    splits one --data file) is one it reads (--data, --eval-data, the --config recipe): the halves
    of a split replaced the file they were split from (`--data ROOT/data/split/train.json`)."""
    written = EXAMPLE_FILES + (SPLIT_FILES if args.eval_data is None and args.data not in SOURCES else ())
    read = {"--data": None if args.data in SOURCES else args.data, "--eval-data": args.eval_data,
            "--config": config_lib.resolve_recipe(args.config)}
    check_distinct({f"--root's {name}": root / name for name in written}, read)


def pipeline_settings(args, config):
    """create_pipeline keyword arguments that come from the shared flags."""
    return dict(config_yaml=config_lib.dump_yaml(config), margin=args.margin, tolerance=args.tolerance,
                beam_pipeline_args=tuple(args.beam_args), enable_cache=not args.no_cache)


def parse_args(argv):
    parser = ArgumentParser(prog="python -m pipelines.local_runner", description=__doc__.splitlines()[0])
    add_pipeline_arguments(parser)
    parser.add_argument("--data", type=nonempty, default="synthetic",
                        help="synthetic (default), tfds, or a SQuAD 2.0 JSON(.gz) file (split by article "
                             "unless --eval-data is given)")
    parser.add_argument("--eval-data", type=nonempty, help="SQuAD 2.0 JSON(.gz) eval file (with a file for --data)")
    parser.add_argument("--min-dev-questions", type=positive_integer, default=configs.MIN_DEV_QUESTIONS,
                        help="splitting one file: the eval half takes articles until it holds this many questions "
                             f"(default {configs.MIN_DEV_QUESTIONS})")
    parser.add_argument("--root", type=nonempty, default=str(REPO / "runs" / "tfx"),
                        help="pipeline state, metadata and data (default runs/tfx in the repository)")
    parser.add_argument("--serving-model-dir", type=nonempty, default=str(REPO / "saved_models" / configs.MODEL_NAME),
                        help=f"where the Pusher writes numbered versions (default saved_models/{configs.MODEL_NAME} in the "
                             "repository)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the examples under ROOT/data/examples and stop (e.g. to copy them for Kubeflow)")
    args = parser.parse_args(argv)
    check_pipeline_flags(args)
    if args.eval_data and args.data in SOURCES:
        raise RoadError(f"--eval-data: needs a SQuAD file for --data, not {args.data} (which brings its own eval split)")
    check_held_out(args.data, args.eval_data)
    check_writable_dir(args.root, "--root")
    check_root(pathlib.Path(args.root))
    check_inputs_kept(args, pathlib.Path(args.root))
    check_apart(args.root, args.serving_model_dir)
    check_model_folder(args.serving_model_dir, "--serving-model-dir", "choose another --serving-model-dir")
    return args


def check_held_out(data, eval_data):
    """RoadError when --eval-data is the --data file (another spelling of its path, a symbolic or hard
    link to it too; `same_file`): the gate would score the model on the questions it trained on, and
    bless it on them."""
    if eval_data and same_file(eval_data, data):
        raise RoadError(f"--eval-data {eval_data}: is the --data file; the gate would score the model on the "
                        "questions it trained on; give a held-out file, or leave --eval-data out and the run "
                        "splits --data by article into train and eval halves")


def check_root(root):
    """RoadError naming --root when something other than a folder stands where a run writes one
    under it (ROOT_FOLDERS), or something other than an SQLite file (or nothing, or an empty file)
    where its metadata store goes: found before the data is read, where they stopped the run
    half-way with a traceback."""
    for name in ROOT_FOLDERS:
        check_folder(root / name, f"--root {root}: ", "move it away or choose another --root")
    metadata = root / METADATA_FILE
    try:
        kind, head = file_head(metadata, len(SQLITE_HEADER))
    except OSError as error:
        raise RoadError(f"--root {root}: cannot read {metadata} ({error.strerror or error})") from None
    if kind not in (None, "a file"):
        raise RoadError(f"--root {root}: {metadata} is {kind}, not the pipeline's metadata file; move it away or "
                        "choose another --root")
    if head and head != SQLITE_HEADER:
        raise RoadError(f"--root {root}: {metadata} is not an SQLite database (the pipeline's metadata store); move it "
                        "away or choose another --root")


def check_apart(root, serving_model_dir, root_flag="--root", within=lies_within):
    """RoadError when --serving-model-dir is the pipeline's root folder (`root_flag`), lies in it or
    holds it: the model folder would hold the run's data, pipeline and metadata beside its versions,
    and the next run refuse it as a folder of other files (a run whose model the gate did not bless
    left only those). `within(path, folder)`: whether path is or lies in folder."""
    if within(serving_model_dir, root) or within(root, serving_model_dir):
        raise RoadError(f"--serving-model-dir {serving_model_dir}: is, holds or lies in {root_flag} {root}, where the "
                        "run keeps its data, pipeline and metadata; give them separate folders")


def prepare_examples(args, config, root):
    """Reads `--data` (stopping on malformed data or an empty split) and writes the ImportExampleGen input;
    returns its folder."""
    from pipelines.data import load_questions, write_examples

    train, evaluation = load_questions(args.data, args.eval_data, config.data, root / "data", args.min_dev_questions)
    return write_examples(root / "data" / "examples", train, evaluation)


def latest_gate_reason(pipeline_root):
    """The reason line of the newest SquadGate decision under `pipeline_root` ("" if none)."""
    reasons = sorted(pipeline_root.glob("SquadGate/blessing/*/*BLESSED"), key=lambda p: int(p.parent.name))
    return reasons[-1].read_text().strip() if reasons else ""


def run(args, config):
    """Prepares the data and runs the pipeline; returns (pushed version folders, the gate's reason)."""
    root = pathlib.Path(args.root).absolute()
    serving = pathlib.Path(args.serving_model_dir).absolute()
    data_root = prepare_examples(args, config, root)
    # Imported once the data is checked: importing TFX takes seconds.
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline

    before = versions(serving)
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME, pipeline_root=str(root / "pipeline"), data_root=str(data_root),
        serving_model_dir=str(serving),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.db")),
        inputs_stamp=configs.inputs_stamp(config), **pipeline_settings(args, config))
    tfx.orchestration.LocalDagRunner().run(pipeline)
    pushed = [path for number, path in sorted(versions(serving).items()) if number not in before]
    return pushed, latest_gate_reason(root / "pipeline")


@cli_main
def main(argv=None):
    args = parse_args(argv)
    config = resolve_config(args)
    if args.prepare_only:
        print(f"examples: {prepare_examples(args, config, pathlib.Path(args.root).absolute())}")
        return 0
    config_lib.check_pretrained_folders(config)  # the Trainer reads them; stop before any component runs
    check_encoder_vocabularies(config)
    pushed, reason = run(args, config)
    print(f"gate: {reason}")
    print(f"pushed: {pushed[0]}" if pushed else "pushed: nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
