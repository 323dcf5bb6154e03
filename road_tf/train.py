"""python -m road_tf.train: fine-tune (and distill) a small reading-comprehension model, then export it.

Reads top to bottom: configuration -> run folder's name (resume or new) -> checks that fail fast -> data ->
the run folder's first files (once all that passed) -> (multi-task pre-training) -> teachers -> student
without KD (the baseline) -> student with KD -> evaluation -> export -> summary.

Runs resume by default: the run folder is `runs/<recipe>-<hash of the resolved config>`, so the
same command (same recipe, same overrides) finds the unfinished run it started and continues it,
and a finished run is reported, not retrained. `--new` starts a fresh run folder instead.
"""

import dataclasses
import datetime
import json
import logging
import os
import pathlib
import sys
from argparse import RawDescriptionHelpFormatter

from road_tf import cluster
from road_tf import config as config_lib
from road_tf.data import sources
from road_tf.data.vocab import check_encoder_vocabularies, read_vocab, vocab_path
from road_tf.errors import (ArgumentParser, ConfigError, RoadError, cli_main, first_few, is_finite_number, nonempty,
                            one_line_when_stopped)
from road_tf.files import (check_model_folder, check_weights_file, check_writable_dir, entry_kind, lies_within,
                           non_file_kind, visible_entries, write_atomic)
from road_tf.run_clock import TIME_FILE
from road_tf.registry import SPAN, task_spec

EPILOG_HEADER = "recipes (configs/*.yaml, pass --config NAME or a path):"
LOG_FILE = "train.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
RUN_START_FILES = frozenset({config_lib.RUN_CONFIG_FILE, LOG_FILE, TIME_FILE})
"""What a run writes into its folder before its first stage does (road_tf.experiments' clock: TIME_FILE)."""
SUMMARY_FILE = "summary.md"
VERBOSE_ENV = "ROAD_TF_VERBOSE"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """How the checks of `train_run` name the run folder and what they tell the user to do about one
    in the way: `flag` names it ("--output-dir X"), and `remedy`, when given, replaces each message's
    own advice (choose another --output-dir, give the settings it was started with): a caller that
    names run folders itself (road_tf.experiments, by their config's hash) takes neither flag nor
    settings."""

    flag: str = "--output-dir"
    remedy: str = ""

    def advice(self, own):
        """`remedy`, or the message's `own` advice when there is none."""
        return self.remedy or own


OUTPUT_DIR = RunFolder()
"""train's own run folder: its --output-dir."""


def parse_args(argv):
    """Command-line flags; --help lists the recipes."""
    recipes = "\n".join(f"  {name:24s} {doc}" for name, doc in config_lib.recipes().items())
    parser = ArgumentParser(
        prog="python -m road_tf.train",
        description="Train, distill, evaluate and export a small reading-comprehension model.",
        epilog=f"{EPILOG_HEADER}\n{recipes}\n\nSet {VERBOSE_ENV}=1 to see TensorFlow's own log lines.",
        formatter_class=RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=nonempty, help="recipe name (e.g. demo) or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field, e.g. --set train.steps=100 (repeatable)")
    parser.add_argument("--output-dir", type=nonempty,
                        help="run directory (default runs/<recipe>-<config hash>, resumed if it exists)")
    parser.add_argument("--new", action="store_true", help="start a new run folder instead of resuming the matching one")
    parser.add_argument("--skip-bad-records", action="store_true",
                        help="warn about and skip malformed data records instead of stopping (data.skip_bad_records)")
    args = parser.parse_args(argv)
    if args.skip_bad_records:
        sections = (config_lib.parse_set(pair).get("data") for pair in args.overrides)
        if any(isinstance(data, dict) and "skip_bad_records" in data for data in sections):
            raise RoadError("--skip-bad-records: sets data.skip_bad_records, which --set sets too; give one of them")
        args.overrides.append("data.skip_bad_records=true")
    return args


def resolve_run(args):
    """(config, output dir): the model is named after the recipe unless export.model_name says otherwise."""
    path, config = config_lib.load_recipe(args.config, args.overrides)
    recipe = path.stem if path else "default"
    if not config.export.model_name:
        config = dataclasses.replace(config, export=dataclasses.replace(config.export, model_name=f"road_{recipe}"))
    if args.output_dir:
        output_dir = pathlib.Path(args.output_dir)
        if args.new and visible_entries(output_dir, "--output-dir"):
            raise RoadError(f"--new: --output-dir {output_dir} is not new (it holds files); choose a new folder")
        return config, output_dir
    digest = config_lib.config_digest(config, 10)
    folder = f"runs/{recipe}-{digest}"
    if args.new:
        folder += datetime.datetime.now().strftime("-%Y%m%d-%H%M%S")
    return config, pathlib.Path(folder)


def check_teacher_files(distillation):
    """Fails unless every teacher's checkpoint, and (offline) the teacher-logits cache, is there."""
    if distillation.mode == "offline":
        cache = pathlib.Path(distillation.cache_path)
        if not all(entry_kind(path) == "a file" for path in (cache, cache.with_suffix(".json"))):
            raise ConfigError(f"distillation.cache_path: {cache}: no complete teacher-logits cache "
                              "(write it with python -m road_tf.cache_teacher)")
    for i, teacher in enumerate(distillation.teachers):
        if teacher.checkpoint:
            check_weights_file(teacher.checkpoint, f"distillation.teachers[{i}].checkpoint")


def check_run_folder(output_dir, folder=OUTPUT_DIR):
    """RoadError when `output_dir` is a folder that holds files but is not a run's: a run resumes in
    its own folder (it holds the `config.yaml` and `train.log` a run writes first), starts in an
    empty or new one, and must not scatter its files among others (the repository, a home folder)."""
    entries = visible_entries(output_dir, folder.flag)
    if entries and not entries & RUN_START_FILES:
        raise RoadError(f"{folder.flag} {output_dir}: a folder holding other files ({first_few(sorted(entries))}), "
                        f"not a road_tf run (no config.yaml or train.log); {folder.advice('choose a new or empty folder')}")


def check_same_config(config, output_dir, folder=OUTPUT_DIR):
    """RoadError when `output_dir` holds the `config.yaml` of a run of another configuration (or a
    config.yaml no run wrote): resuming it would train one run under two configurations, and a
    finished one would be reported as this configuration's."""
    if entry_kind(output_dir / config_lib.RUN_CONFIG_FILE) != "a file":
        return
    try:
        changed = config_lib.changed_fields(config_lib.config_of_run(output_dir), config)
    except ConfigError as error:
        raise RoadError(f"{folder.flag} {output_dir}: not a road_tf run's config.yaml ({error}); "
                        f"{folder.advice('choose another --output-dir')}") from None
    if changed:
        raise RoadError(f"{folder.flag} {output_dir}: holds a run of another configuration "
                        f"(it differs in {first_few(changed)}); "
                        + folder.advice("give the settings it was started with to resume it, or choose another --output-dir"))


def check_data_paths(paths):
    """ConfigError unless each existing path of `paths` ({config field: path}, "" for unset) is a
    regular file: a run reads its data more than once and records the path to resume from, so a
    pipe would be empty the second time and a device never ends (missing files are the readers' to
    report)."""
    for field, path in paths.items():
        kind = non_file_kind(path) if path else None
        if kind:
            why = "" if kind == "a folder" else " (a run reads its data more than once)"
            raise ConfigError(f"{field}: {path}: {kind}, not a file{why}")


def check_separate_outputs(config, output_dir, folder=OUTPUT_DIR):
    """RoadError when one of the folders the run writes (its run folder, `data.cache_dir` and, when it
    exports, the model folder of `export.base_dir`) is another or lies inside it: a run folder inside
    a model folder would sit among its versions, a model folder or feature cache inside a run folder
    would be deleted with the run."""
    outputs = [(folder.flag, output_dir), ("data.cache_dir", sources.cache_root(config.data))]
    if config.export.enabled and task_spec(config.task).kind == SPAN:
        outputs.append(("export.base_dir's model folder", config.export.model_folder()))
    for i, (name, path) in enumerate(outputs):
        for other, other_path in outputs[i + 1:]:
            if lies_within(path, other_path) or lies_within(other_path, path):
                raise RoadError(f"{name} {path}: lies in or holds {other} {other_path}; give them separate folders")


def preflight(config, output_dir, folder=OUTPUT_DIR):
    """Fails before anything is written or trained on what would otherwise stop the run later.

    Checks that the run, cache and export folders can be written, that teacher checkpoints (or the
    offline cache) exist, that the encoders started from or learnt from were trained with
    `data.vocab`'s pieces (`road_tf.data.vocab.check_encoder_vocabularies`), that a vocabulary file
    given as a path reads, and that local data files (the main task's and, with a multi-task
    stage, `multitask.task_files`) read and hold examples (TFDS and synthetic data are read by the
    run itself). None of it loads TensorFlow, so it takes about a second.
    """
    spec = task_spec(config.task)
    check_writable_dir(output_dir, folder.flag)
    check_writable_dir(sources.cache_root(config.data), "data.cache_dir")
    if config.export.enabled and spec.kind == SPAN:
        check_model_folder(config.export.model_folder(), "export.base_dir")
    check_teacher_files(config.distillation)
    config_lib.check_pretrained_folders(config)
    check_encoder_vocabularies(config)
    if config.data.vocab != "minilm":
        read_vocab(vocab_path(config.data.vocab))
    if config.data.source == "json":
        check_data_paths({"data.train_path": config.data.train_path, "data.dev_path": config.data.dev_path})
        for split in ("train", "dev"):
            sources.load_split(spec, config.data, split)
    if config.multitask.steps:
        for i, files in enumerate(config.multitask.task_files):
            check_data_paths({f"multitask.task_files[{i}].{name}": getattr(files, name)
                              for name in ("train_path", "dev_path")})
            for split in ("train", "dev"):
                sources.load_split(task_spec(files.task), config.data, split, is_main_task=False, task_files=files)


MAX_HELD_LINES = 10_000
"""The most log lines held for the run's log file before its folder exists (the rest are counted)."""


class HeldLines(logging.Handler):
    """Holds a run's first log lines (at most MAX_HELD_LINES) until its folder exists (`start_log_file`):
    a run stopped by its checks must not leave a folder behind just for its log."""

    def __init__(self):
        super().__init__()
        self.records, self.dropped = [], 0

    def emit(self, record):
        if len(self.records) < MAX_HELD_LINES:
            self.records.append(record)
        else:
            self.dropped += 1

    def pass_to(self, handler):
        """Passes the held lines to `handler`, then a line counting those that were not held."""
        for record in self.records:
            handler.handle(record)
        if self.dropped:
            handler.handle(logging.makeLogRecord({"msg": f"{self.dropped} more log lines before the run started "
                                                          "were not kept", "levelno": logging.WARNING,
                                                  "levelname": "WARNING"}))
        self.records, self.dropped = [], 0


def setup_logging():
    """INFO lines in the run's format to stdout, and held for `<run>/train.log` (`start_log_file`);
    tracebacks, and other libraries' lines unless ROAD_TF_VERBOSE is set, go to the log file only.

    Replaces the root logger's handlers, unless lines are already held for a run that has not
    started (the command's own call, before it called `train_run`), which keeps them.
    """
    root = logging.getLogger()
    if any(isinstance(handler, HeldLines) for handler in root.handlers):
        return
    if not os.environ.get(VERBOSE_ENV):
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # what tf.get_logger() returns
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    console.addFilter(lambda record: not record.exc_info)
    if not os.environ.get(VERBOSE_ENV):  # road_tf's own lines only (TensorFlow and absl log to other loggers)
        console.addFilter(lambda record: record.name == "root" or record.name.startswith("road_tf"))
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()  # a previous run's train.log
    root.addHandler(console)
    root.addHandler(HeldLines())


def drop_held_lines():
    """Forgets the lines held for a run that will write no log file (it had finished, or its checks
    stopped it), so that they do not reach the next run's train.log in the same process
    (road_tf.experiments, or a caller retrying with a fixed config)."""
    root = logging.getLogger()
    for held in [handler for handler in root.handlers if isinstance(handler, HeldLines)]:
        root.removeHandler(held)


def log_file_name(train_config):
    """The run's log file name: LOG_FILE, or on a multi-worker task other than the chief its own
    `train.<type>-<index>.log` (all tasks run the same command; the log keeps that task's tracebacks)."""
    if cluster.is_chief(train_config):
        return LOG_FILE
    task_type, index, _ = cluster.cluster_task()
    return f"train.{task_type}-{index}.log"


def start_log_file(output_dir, train_config):
    """Creates the run folder and its log file (`log_file_name`), which receives the lines held so
    far and all later ones."""
    root = logging.getLogger()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(output_dir / log_file_name(train_config))
    log_file.setFormatter(logging.Formatter(LOG_FORMAT))
    for held in [handler for handler in root.handlers if isinstance(handler, HeldLines)]:
        held.pass_to(log_file)
        root.removeHandler(held)
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


def read_finished_run(metrics_path, folder=OUTPUT_DIR):
    """The metrics.json dict of a finished run; RoadError when the file is not what a run writes: a
    JSON object whose `stages` map names to metric objects, whose `final` names its `task` and holds
    finite numbers, and whose `export` is a path or null."""
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: also JSONDecodeError, UnicodeDecodeError
        metrics = None
    final = metrics.get("final") if isinstance(metrics, dict) else None
    finished = (isinstance(final, dict) and isinstance(final.get("task"), str)
                and all(is_finite_number(value) for key, value in final.items() if key not in ("task", "split"))
                and isinstance(metrics.get("stages"), dict)
                and all(isinstance(stage, dict) for stage in metrics["stages"].values())
                and isinstance(metrics.get("export"), (str, type(None))))
    if not finished:
        raise RoadError(f"{metrics_path}: not the metrics.json of a finished road_tf run; "
                        + folder.advice("move it away or choose another --output-dir"))
    return metrics


def checked_start(config, output_dir, folder=OUTPUT_DIR):
    """What `train_run` checks and loads before the run folder is made -> (the metrics of a finished
    run, or None; `experiment.prepare_run`'s inputs, or None for a finished run). An unexpected
    error while preparing starts `train.log`, which keeps its traceback."""
    preflight(config, output_dir, folder)
    own_files = {config_lib.RUN_METRICS_FILE: "metrics", config_lib.RUN_CONFIG_FILE: "configuration",
                 TIME_FILE: "training time", SUMMARY_FILE: "summary", log_file_name(config.train): "log"}
    for name, what in own_files.items():
        kind = non_file_kind(output_dir / name)
        if kind:
            raise RoadError(f"{output_dir / name}: is {kind}, where the run would write its {what}; "
                            + folder.advice("move it away or choose another --output-dir"))
    metrics_path = output_dir / config_lib.RUN_METRICS_FILE
    check_same_config(config, output_dir, folder)
    if entry_kind(metrics_path) == "a file":
        return read_finished_run(metrics_path, folder), None
    check_run_folder(output_dir, folder)
    check_separate_outputs(config, output_dir, folder)
    from road_tf.experiment import prepare_run, running  # TensorFlow loads here, once the quick checks passed

    try:
        with running("setup"):
            return None, prepare_run(config, output_dir)
    except RoadError as error:
        if error.__cause__ is not None:  # not a check but an unexpected error: train.log keeps its traceback
            start_log_file(output_dir, config.train)
        raise


def train_run(config, output_dir, folder=OUTPUT_DIR):
    """Checks, then trains `config` into `output_dir` (resuming it), or reads it back when finished.

    The run folder and its `train.log` are made once the checks and the data loading passed: a run
    they stop leaves nothing behind (a folder that was there is left as it was), unless an
    unexpected error stopped it, whose traceback `train.log` keeps.

    Args:
        config: the run's Config; output_dir: its folder; folder: how messages name that folder
            (`RunFolder`), train's --output-dir by default.

    Returns:
        (metrics.json's dict, whether this call trained: False for a run that had finished).
    """
    setup_logging()
    try:
        finished, inputs = checked_start(config, output_dir, folder)
    except BaseException:
        drop_held_lines()  # a run its checks stopped writes no log (start_log_file took them after an unexpected error)
        raise
    if finished:
        drop_held_lines()
        return finished, False
    from road_tf.experiment import run_and_record, running

    start_log_file(output_dir, config.train)
    with running("setup"):
        metrics = run_and_record(config, output_dir, inputs)
    write_atomic(cluster.worker_path(output_dir / SUMMARY_FILE, config.train),
                 summary_table(list(metrics["stages"].items())) + "\n")
    return metrics, True


def resume_hint(output_dir, new):
    """How to resume the stopped run in `output_dir`, in words; `new`: it was started with --new,
    which a rerun would give a fresh folder (or refuse, with --output-dir)."""
    if not output_dir.exists():
        return "the run had not started"
    if new:
        return f"rerun with --output-dir {output_dir} and without --new to resume it from its last checkpoint"
    return f"the same command resumes {output_dir} from its last checkpoint"


def train_until_stopped(config, output_dir, new=False):
    """`train_run`, ended by Ctrl-C or SIGTERM with one line on stderr saying how to resume it
    (`resume_hint`) and the shell's exit code for the signal (`one_line_when_stopped`)."""
    with one_line_when_stopped(lambda: resume_hint(output_dir, new)):
        return train_run(config, output_dir)


@cli_main
def main(argv=None):
    setup_logging()
    args = parse_args(argv)
    config, output_dir = resolve_run(args)
    metrics, trained = train_until_stopped(config, output_dir, args.new)
    if not trained:
        print(f"already finished (use --new to train again): {output_dir}")
    table = summary_table(list(metrics["stages"].items()))
    print("\n" + table + "\n\n" + "\n".join(closing_lines(metrics, output_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
