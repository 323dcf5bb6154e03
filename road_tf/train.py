"""python -m road_tf.train: fine-tune (and distill) a small reading-comprehension model, then export it.

Reads top to bottom: configuration -> checks that fail fast -> data -> (multi-task pre-training)
-> teachers -> student without KD (the baseline) -> student with KD -> evaluation -> export ->
summary. Every stage checkpoints, so rerunning a killed command resumes where it stopped.
"""

import argparse
import datetime
import logging
import pathlib
import sys

from road_tf import config as config_lib
from road_tf.data import sources
from road_tf.data.vocab import read_vocab, vocab_path
from road_tf.errors import ArgumentParser, ConfigError, cli_main
from road_tf.files import check_writable_dir
from road_tf.tasks import get_task

EPILOG_HEADER = "recipes (configs/*.yaml, pass --config NAME or a path):"


def parse_args(argv):
    """Command-line flags; --help lists the recipes."""
    recipes = "\n".join(f"  {name:24s} {doc}" for name, doc in config_lib.recipes().items())
    parser = ArgumentParser(
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
    try:
        path = config_lib.resolve_recipe(args.config) if args.config else None
    except OSError as error:
        raise ConfigError(f"--config {args.config!r}: {error.strerror or error}") from None
    config = config_lib.load_config(path, args.overrides)
    recipe = path.stem if path else "default"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = pathlib.Path(args.output_dir or f"runs/{recipe}-{stamp}")
    return config, output_dir


# The first bytes of the files `keras.Model.load_weights` reads, by file name ending.
WEIGHTS_SIGNATURES = {".keras": b"PK\x03\x04", ".h5": b"\x89HDF\r\n\x1a\n", ".hdf5": b"\x89HDF\r\n\x1a\n"}


def check_weights_file(path, field):
    """Raises ConfigError unless `path` is a readable Keras weights file (.weights.h5, .h5, .keras)."""
    signature = next((magic for suffix, magic in WEIGHTS_SIGNATURES.items() if str(path).endswith(suffix)), None)
    if signature is None:
        raise ConfigError(f"{field}: {path}: expected a Keras weights file ending in .weights.h5, .h5 or .keras")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(signature))
    except OSError as error:
        raise ConfigError(f"{field}: {path}: cannot read the checkpoint ({error.strerror or error})") from None
    if head != signature:
        raise ConfigError(f"{field}: {path}: not a Keras weights file (its first bytes are not {signature!r})")


def check_teachers(distillation):
    """Fails unless every teacher's checkpoint (online) or the teacher-logits cache (offline) is there."""
    if distillation.mode == "offline":
        cache = pathlib.Path(distillation.cache_path)
        if not (cache.is_file() and cache.with_suffix(".json").is_file()):
            raise ConfigError(f"distillation.cache_path: {cache}: no complete teacher-logits cache "
                              "(write it with python -m road_tf.cache_teacher)")
        return
    for i, teacher in enumerate(distillation.teachers):
        if teacher.checkpoint:
            check_weights_file(teacher.checkpoint, f"distillation.teachers[{i}].checkpoint")


def preflight(config, output_dir):
    """Fails before anything is written or trained on what would otherwise stop the run later.

    Checks that the run, cache and export folders can be written, that teacher checkpoints (or the
    offline cache) exist, that a vocabulary file given as a path reads (the bundled MiniLM one is
    checked when it loads), and that local data files read and hold examples (TFDS and synthetic
    data are read by the run itself). None of it loads TensorFlow, so it takes about a second.
    """

    task = get_task(config.task)
    check_writable_dir(output_dir, "--output-dir")
    check_writable_dir(sources.cache_root(config.data), "data.cache_dir")
    if config.export.enabled and task.kind == "span":
        check_writable_dir(pathlib.Path(config.export.base_dir) / config.export.model_name, "export.base_dir")
    check_teachers(config.distillation)
    if config.data.vocab != "minilm":
        read_vocab(vocab_path(config.data.vocab))
    if config.data.source == "json":
        for split in ("train", "dev"):
            sources.load_split(task, config.data, split)


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
    preflight(config, output_dir)
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
