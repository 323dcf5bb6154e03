"""python -m pipelines.local_runner: run the TFX pipeline on this machine (LocalDagRunner, sqlite MLMD).

Paths live here only. `--config`/`--set` pick the road_tf run configuration exactly as
`python -m road_tf.train` does; `--data` names the questions (see pipelines/data.py). Pipeline
state and metadata go under `--root` (default runs/tfx/); blessed models are pushed to
`--serving-model-dir` (default saved_models/road_tfx/<version>/). Caching is on: an unchanged
component is not rerun; `--no-cache` reruns everything.
"""

import math
import pathlib
import sys

from pipelines import configs
from road_tf import config as config_lib
from road_tf.errors import ArgumentParser, RoadError, cli_main, nonempty
from road_tf.files import check_writable_dir, versions

REPO = pathlib.Path(__file__).resolve().parent.parent


def add_pipeline_arguments(parser):
    """The flags shared with the Kubeflow runner: recipe, overrides, gate and Beam settings."""
    parser.add_argument("--config", type=nonempty, help="road_tf recipe name (e.g. demo) or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one road_tf field, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--margin", type=float, default=configs.NO_ANSWER_MARGIN,
                        help="gate floor: dev F1 must exceed the always-no-answer F1 by this many points")
    parser.add_argument("--tolerance", type=float, default=configs.REGRESSION_TOLERANCE,
                        help="gate: dev F1 may trail the latest blessed model's by at most this many points")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[], metavar="FLAG",
                        help="Beam flag for the data components, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component (TFX caching off)")


def check_pipeline_flags(args):
    """RoadError unless the gate's --margin and --tolerance are finite numbers and every --beam-arg
    is a flag (Beam ignores other words silently)."""
    for flag in ("margin", "tolerance"):
        if not math.isfinite(getattr(args, flag)):
            raise RoadError(f"--{flag}: must be a finite number of F1 points, got {getattr(args, flag)}")
    for beam_arg in args.beam_args:
        if not (isinstance(beam_arg, str) and beam_arg.startswith("--") and len(beam_arg) > 2):
            raise RoadError(f"--beam-arg {beam_arg!r}: not a Beam flag; write it as --beam-arg=--name=value")


def resolve_config(args):
    """The road_tf Config of `--config` and `--set`, as road_tf.train resolves it (teachers named by
    their run made concrete)."""
    path = config_lib.resolve_recipe(args.config) if args.config else None
    return config_lib.resolve_teacher_runs(config_lib.load_config(path, args.overrides))


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
    parser.add_argument("--min-dev-questions", type=int, default=configs.MIN_DEV_QUESTIONS,
                        help="splitting one file: the eval half takes articles until it holds this many questions")
    parser.add_argument("--root", type=nonempty, default=str(REPO / "runs" / "tfx"),
                        help="pipeline state, metadata and data")
    parser.add_argument("--serving-model-dir", type=nonempty, default=str(REPO / "saved_models" / configs.MODEL_NAME))
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the examples under ROOT/data/examples and stop (e.g. to copy them for Kubeflow)")
    args = parser.parse_args(argv)
    check_pipeline_flags(args)
    if args.eval_data and args.data in ("synthetic", "tfds"):
        raise RoadError(f"--eval-data: needs a SQuAD file for --data, not {args.data} (which brings its own eval split)")
    if args.min_dev_questions < 1:
        raise RoadError(f"--min-dev-questions: must be at least 1, got {args.min_dev_questions}")
    check_writable_dir(args.root, "--root")
    check_writable_dir(args.serving_model_dir, "--serving-model-dir")
    return args


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
        **pipeline_settings(args, config))
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
    pushed, reason = run(args, config)
    print(f"gate: {reason}")
    print(f"pushed: {pushed[0]}" if pushed else "pushed: nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
