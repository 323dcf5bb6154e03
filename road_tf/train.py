"""python -m road_tf.train: fine-tune (and distill) a small reading-comprehension model, then export it.

Reads top to bottom: configuration -> data -> (multi-task pre-training) -> teachers -> student
without KD (the baseline) -> student with KD -> evaluation -> export -> summary. Every stage
checkpoints, so rerunning a killed command resumes where it stopped.
"""

import argparse
import datetime
import logging
import pathlib
import sys

from road_tf import config as config_lib
from road_tf.errors import cli_main

EPILOG_HEADER = "recipes (configs/*.yaml, pass --config NAME or a path):"


def parse_args(argv):
    """Command-line flags; --help lists the recipes."""
    recipes = "\n".join(f"  {name:24s} {doc}" for name, doc in config_lib.recipes().items())
    parser = argparse.ArgumentParser(
        prog="python -m road_tf.train",
        description="Train, distill, evaluate and export a small reading-comprehension model.",
        epilog=f"{EPILOG_HEADER}\n{recipes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="recipe name (e.g. demo) or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    parser.add_argument("--skip-bad-records", action="store_true",
                        help="warn about and skip malformed data records instead of stopping (data.skip_bad_records)")
    args = parser.parse_args(argv)
    if args.skip_bad_records:
        args.overrides.append("data.skip_bad_records=true")
    return args


def resolve_run(args):
    """(config, output dir) from the parsed flags."""
    path = config_lib.resolve_recipe(args.config) if args.config else None
    config = config_lib.load_config(path, args.overrides)
    recipe = path.stem if path else "default"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = pathlib.Path(args.output_dir or f"runs/{recipe}-{stamp}")
    return config, output_dir


def summary_table(rows):
    """A fixed-width table of (model, metric dict) rows."""
    columns = ["exact", "f1", "HasAns_f1", "NoAns_f1", "accuracy"]
    columns = [c for c in columns if any(c in metrics for _, metrics in rows)]
    lines = [f"{'model':28s}" + "".join(f"{c:>11s}" for c in columns)]
    for name, metrics in rows:
        lines.append(f"{name:28s}" + "".join(f"{metrics[c]:11.2f}" if c in metrics else f"{'-':>11s}" for c in columns))
    return "\n".join(lines)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    config, output_dir = resolve_run(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    from road_tf.experiment import run_and_record

    metrics = run_and_record(config, output_dir)
    rows = [(name, values) for name, values in metrics["stages"].items()]
    print(f"\nrun directory: {output_dir}")
    if metrics.get("export"):
        print(f"exported: {metrics['export']}")
    print(summary_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
