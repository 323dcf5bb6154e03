"""python -m road_tf.train: fine-tune (and distill) a small reading-comprehension model, then export it.

Reads top to bottom: configuration -> run folder (resume or new) -> data -> (multi-task
pre-training) -> teachers -> student without KD (the baseline) -> student with KD -> evaluation
-> export -> summary.

Runs resume by default: the run folder is `runs/<recipe>-<hash of the resolved config>`, so the
same command (same recipe, same overrides) finds the unfinished run it started and continues it,
and a finished run is reported, not retrained. `--new` starts a fresh run folder instead.
"""

import argparse
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import pathlib
import sys

from road_tf import config as config_lib
from road_tf.errors import RoadError, cli_main
from road_tf.files import write_atomic

EPILOG_HEADER = "recipes (configs/*.yaml, pass --config NAME or a path):"
LOG_FILE = "train.log"
SUMMARY_FILE = "summary.md"
VERBOSE_ENV = "ROAD_TF_VERBOSE"


def parse_args(argv):
    """Command-line flags; --help lists the recipes."""
    recipes = "\n".join(f"  {name:24s} {doc}" for name, doc in config_lib.recipes().items())
    parser = argparse.ArgumentParser(
        prog="python -m road_tf.train",
        description="Train, distill, evaluate and export a small reading-comprehension model.",
        epilog=f"{EPILOG_HEADER}\n{recipes}\n\nSet {VERBOSE_ENV}=1 to see TensorFlow's own log lines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="recipe name (e.g. demo) or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (default runs/<recipe>-<config hash>, resumed if it exists)")
    parser.add_argument("--new", action="store_true", help="start a new run folder instead of resuming the matching one")
    parser.add_argument("--skip-bad-records", action="store_true",
                        help="warn about and skip malformed data records instead of stopping (data.skip_bad_records)")
    args = parser.parse_args(argv)
    if args.skip_bad_records:
        args.overrides.append("data.skip_bad_records=true")
    return args


def resolve_run(args):
    """(config, output dir): the model is named after the recipe unless export.model_name says otherwise."""
    path = config_lib.resolve_recipe(args.config) if args.config else None
    config = config_lib.load_config(path, args.overrides)
    recipe = path.stem if path else "default"
    if not config.export.model_name:
        config = dataclasses.replace(config, export=dataclasses.replace(config.export, model_name=f"road_{recipe}"))
    if args.output_dir:
        return config, pathlib.Path(args.output_dir)
    digest = hashlib.sha256(config_lib.dump_yaml(config).encode("utf-8")).hexdigest()[:10]
    folder = f"runs/{recipe}-{digest}"
    if args.new:
        folder += datetime.datetime.now().strftime("-%Y%m%d-%H%M%S")
    return config, pathlib.Path(folder)


def setup_logging(output_dir):
    """INFO lines to stdout and to `<run>/train.log`; tracebacks go to the log file only."""
    if not os.environ.get(VERBOSE_ENV):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    console.addFilter(lambda record: not record.exc_info)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(output_dir / LOG_FILE)
    log_file.setFormatter(formatter)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(console)
    root.addHandler(log_file)


def summary_table(rows):
    """A Markdown table of (model, metric dict) rows."""
    columns = ["exact", "f1", "HasAns_f1", "NoAns_f1", "accuracy", "step"]
    columns = [c for c in columns if any(c in metrics for _, metrics in rows)]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in rows:
        cells = [f"{metrics[c]:.2f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, "-")) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def closing_lines(metrics, output_dir):
    """What a finished run tells its user: the run folder, the exported model, its dev F1, how to serve it."""
    final = metrics["final"]
    score = f"dev F1 {final['f1']:.2f}" if "f1" in final else f"dev accuracy {final.get('accuracy', 0):.4f}"
    lines = [f"run directory: {output_dir}", f"final model: {score} ({final['task']}, step {final.get('step', '-')})"]
    if metrics.get("export"):
        version = pathlib.Path(metrics["export"])
        lines += [f"exported: {version}",
                  f"serve it: python -m serving.devserver --model_name {version.parent.name} "
                  f"--model_base_path {version.parent}"]
    return lines


@cli_main
def main(argv=None):
    args = parse_args(argv)
    config, output_dir = resolve_run(args)
    if output_dir.exists() and not output_dir.is_dir():
        raise RoadError(f"--output-dir {output_dir}: exists and is not a folder")
    metrics_path = output_dir / "metrics.json"
    if metrics_path.is_file():
        print(f"already finished (use --new to train again): {output_dir}")
        metrics = json.loads(metrics_path.read_text())
    else:
        setup_logging(output_dir)
        from road_tf.experiment import run_and_record, running

        with running("setup"):
            metrics = run_and_record(config, output_dir)
    table = summary_table(list(metrics["stages"].items()))
    write_atomic(output_dir / SUMMARY_FILE, table + "\n")
    print("\n" + table + "\n\n" + "\n".join(closing_lines(metrics, output_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
