"""python -m road_tf.export: export a finished run's student as the next TF Serving version.

    python -m road_tf.export --run-dir RUN [--model-name NAME] [--base saved_models]

The SavedModel is the one a training run exports at its end (`road_tf.saved_model`), with the
run's recorded dev metrics beside it and the no-answer threshold `export.null_threshold` names.
A Ctrl-C or SIGTERM before the version is complete leaves none: it is written to a temporary
folder, then renamed.
"""

import argparse
import dataclasses
import pathlib
import sys

from road_tf.config import RUN_CONFIG_FILE, RUN_METRICS_FILE, ExportConfig, config_of_run, run_weights
from road_tf.errors import (ArgumentParser, ConfigError, RoadError, cli_main, nonempty, one_line_when_stopped,
                            weights_mismatch)
from road_tf.files import check_model_folder, check_writable_dir, entry_kind, require_folder
from road_tf.registry import SPAN, task_spec
from road_tf.train import read_finished_run


def read_run_config(run_dir):
    """A finished run's config, checked to be a QA run's, read without building its model.

    Raises:
        RoadError: when `run_dir` is no folder, lacks config.yaml or the student's weights, or its
            task is not QA.
    """
    run_dir = pathlib.Path(run_dir)
    require_folder(run_dir, str(run_dir), "run folder")
    weights = pathlib.Path(run_weights(run_dir))
    if entry_kind(run_dir / RUN_CONFIG_FILE) != "a file" or entry_kind(weights) != "a file":
        raise RoadError(f"{run_dir}: not a finished run (needs {RUN_CONFIG_FILE} and {weights.relative_to(run_dir)})")
    config = config_of_run(run_dir)
    if task_spec(config.task).kind != SPAN:
        raise RoadError(f"{run_dir}: task {config.task!r} is not a QA task; only QA students are exported")
    return config


def load_student(run_dir, config):
    """The run's (QA task, tokenizer, student model with its trained weights) for its `read_run_config`."""
    from road_tf.data.tokenizer import load_tokenizer  # TensorFlow loads here
    from road_tf.models.task_model import build_model
    from road_tf.tasks import get_task

    task = get_task(config.task)
    weights = run_weights(run_dir)
    tokenizer = load_tokenizer(config.data.vocab)
    model = build_model(config.model, [task], tokenizer.vocabulary_size, config.data.max_seq_length, "student")
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as error:
        raise RoadError(f"{weights}: does not load into the model of the run's config.yaml "
                        f"({weights_mismatch(error)})") from None
    return task, tokenizer, model


def load_run_student(run_dir):
    """Rebuilds a finished run's student: (config, task, tokenizer, model with trained weights)."""
    config = read_run_config(run_dir)
    return (config, *load_student(run_dir, config))


def finished_run_metrics(run_dir, flag=None):
    """The metrics.json dict of the finished run `run_dir` (`train.read_finished_run`'s check).

    Args:
        run_dir: the run directory; flag: the command-line flag that names it ("--model"), if any,
            which starts the error messages.

    Raises:
        RoadError: the run has not finished (no metrics.json), a folder, device or pipe stands in
            its place (a pipe's read would never end), or the file is not what a finished run writes.
    """
    where = f"{flag} {run_dir}" if flag else str(run_dir)
    path = pathlib.Path(run_dir) / RUN_METRICS_FILE
    kind = entry_kind(path)
    if kind is None:
        raise RoadError(f"{where}: no metrics.json; the run has not finished")
    if kind != "a file":
        raise RoadError(f"{where}: its metrics.json is {kind}, not the file a finished run writes")
    try:
        return read_finished_run(path)
    except RoadError:
        raise RoadError(f"{where}: its metrics.json is not the metrics.json of a finished road_tf run "
                        "(damaged, or not written by python -m road_tf.train)") from None


def run_final_metrics(run_dir):
    """The `final` section of a finished run's metrics.json (the exported model's dev metrics);
    RoadError as `finished_run_metrics`."""
    return finished_run_metrics(run_dir)["final"]


def folder_name(value):
    """argparse `type` of --model-name: a model folder's name, as `export.model_name` takes one
    (printable UTF-8, no '/', not hidden)."""
    try:
        ExportConfig(model_name=nonempty(value)).validate()
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error).split(": ", 1)[1]) from None
    return value


def parse_args(argv):
    parser = ArgumentParser(prog="python -m road_tf.export",
                            description="Export a trained run's student as a TF Serving SavedModel version.")
    parser.add_argument("--run-dir", type=nonempty, required=True,
                        help="a finished training run (holds config.yaml, student/)")
    parser.add_argument("--model-name", type=folder_name,
                        help="folder name under --base (default: the run's export.model_name)")
    parser.add_argument("--base", type=nonempty,
                        help="TF Serving model base directory (default: the run's export.base_dir)")
    return parser.parse_args(argv)


def export_run(run_dir, model_name=None, base_dir=None):
    """Exports a finished run's student as the next version of `<base_dir>/<model_name>` (by default the
    run's own export settings) with its recorded dev metrics and the run's absolute path (SOURCE_FILE);
    returns the version folder. TensorFlow loads once the run and the destination passed their checks."""
    config = read_run_config(run_dir)
    export = dataclasses.replace(config.export, model_name=model_name or config.export.model_name,
                                 base_dir=base_dir or config.export.base_dir)
    what = "--base" if base_dir else "export.base_dir"
    check_writable_dir(export.base_dir, what)
    final = run_final_metrics(run_dir)
    check_model_folder(export.model_folder(), what, "choose another --base or --model-name")
    task, tokenizer, model = load_student(run_dir, config)
    from road_tf.saved_model import export_qa_model

    return export_qa_model(model, task, tokenizer, dataclasses.replace(config, export=export),
                           final.get("null_score_diff_threshold"), final, source=run_dir)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    with one_line_when_stopped(lambda: "no version was written; rerun the command to export the run"):
        print(export_run(args.run_dir, args.model_name, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
