"""python -m road_tf.experiments: ROaD's experiment tables as commands.

    python -m road_tf.experiments TABLE --scale tiny|small|full [--output DIR] [--seeds N] [--rows A,B]

Tables (sections of the ROaD write-up), every one on SQuAD 2.0 with the base-size student:
  teacher_choice     4.1  no KD; KD from a fine-tuned large model, from ROaD-Large (large after
                          k=4 multi-task pre-training, fine-tuned without KD), from an ensemble
                          of large models, of ROaD-Large models, of base models
  distilled_teacher  4.2  KD from ROaD-Large vs from a ROaD-Large itself distilled from an
                          ensemble of ROaD-Large models
  kd_form            4.3  from ROaD-Large: logits; hidden states of all layers (TinyBERT's uniform
                          map, learned projection); last layer only; logits + either; each
                          hidden form again with its projections started at the identity
  task_passes        5.1  no multi-task stage, or k = 1, 2, 4, 8 passes at a constant total batch,
                          then logits KD from ROaD-Large
  final              6    the student fine-tuned alone vs ROaD: k=4 multi-task pre-training, then
                          logits KD from ROaD-Large; its rows are exported to `<output>/saved_models`
  all                     every table

Every row is an ordinary training run: `<output>/runs/<student|teacher>-<hash of its config>/`
holds its config.yaml and metrics.json, so a run that two rows or two tables need (e.g. the
teachers, or the `final` table's ROaD row and `task_passes`'s k=4 row) is trained once, a finished
run is never retrained, and a killed table resumes where it stopped. Teachers enter a student's
config by run directory (`distillation.teachers[i].run`); logits-only KD reads teacher logits
cached once per teacher set under `<output>/teacher_logits/`. Students of the 4.x tables are
fine-tuned without the multi-task stage (ROaD's were multi-task pre-trained): that keeps their
cost down and isolates the teacher and KD form; `task_passes` and `final` have the stage.

Each table writes `TABLE.md`, `TABLE.csv` and `TABLE.png` (F1 mean and standard deviation over
seeds, with ROaD's own numbers beside them, on their own scale, where the write-up gives them).
Plots use matplotlib (Agg backend): it installs from wheels beside this stack (numpy 1.26) and
writes PNGs without a display.
"""

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import pathlib
import statistics
import sys

import yaml

from road_tf import cache_teacher, export, train
from road_tf.config import (MODEL_SIZE_FIELDS, RUN_METRICS_FILE, config_digest, config_from_dict, dump_yaml,
                            merge_overrides, resolve_teacher_runs)
from road_tf.errors import (ArgumentParser, RoadError, bounded, cli_main, first_few, first_line, is_finite_number,
                            nonempty, one_line_when_stopped, whole_number)
from road_tf.files import (check_folder, check_utf8, check_writable_dir, entry_kind, read_config_bytes,
                           visible_entries, write_atomic)
from road_tf.run_clock import RunClock, recorded_minutes

SHARED = "../shared/data"
RUN_FOLDER = train.RunFolder("run folder", "delete the run folder to train that run again")
"""How the checks of a run name its folder, which a config's hash named, not a flag."""


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big every run of a scale is.

    Attributes:
        common: overrides (a nested dict, as in a recipe YAML) that every run shares.
        large, base: `model` sections of the large (teacher) and base (student) encoders.
        teacher_steps, student_steps: fine-tuning steps of teachers and students.
        multitask: the `multitask` section of a multi-task stage (its `k` comes from the row).
        ensemble: models in an ensemble teacher (seeds 0..ensemble-1).
        final_seeds: student seeds of the `final` table (the others run one unless --seeds says).
        student_from_large: students of rows with a k-pass multi-task stage skip their own stage and
            start from layers `base.pretrained_layers` of the large model that passed that stage and
            was fine-tuned (ROaD-Large for k=4, trained once in the teacher pool). Only where the
            base model is a cut of the large one.
    """

    common: dict
    large: dict
    base: dict
    teacher_steps: int
    student_steps: int
    multitask: dict
    ensemble: int
    final_seeds: int = 3
    student_from_large: bool = False


SYNTHETIC_TASKS = ["squad2", "synthetic_nli", "synthetic_para", "synthetic_sentiment"]

SCALES = {
    # The embedded synthetic corpus and models of a few thousand parameters: minutes, for the tests.
    "tiny": Scale(
        common={"data": {"source": "synthetic", "synthetic_train_size": 240, "synthetic_dev_size": 60,
                         "max_seq_length": 64, "doc_stride": 32, "max_query_length": 16},
                "train": {"batch_size": 16, "learning_rate": 2e-3, "checkpoint_every": 1000},
                "export": {"enabled": False}},
        large={"num_layers": 2, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "dropout": 0.0},
        base={"num_layers": 1, "hidden_dim": 16, "num_heads": 2, "intermediate_dim": 32, "dropout": 0.0},
        teacher_steps=30, student_steps=20,
        multitask={"tasks": SYNTHETIC_TASKS, "steps": 16, "batch_size": 16, "learning_rate": 2e-3},
        ensemble=2),
    # Real data offline on 2 CPU cores: the SQuAD 2.0 public half split by article (1,157 dev
    # questions, see road_tf.data.squad.split_by_article), the 6-layer MiniLM as the large model and
    # its first 4 layers as the base student (dropping the top layers keeps each layer's input the
    # output it was trained on; 3-layer students, layers 0-2 or 1, 3, 5, answered "no answer" to
    # every dev question after 660 steps, with or without KD, while layers 0-3 learn).
    # The multi-task stage adds the public SST-2 half (100 sentences held out) and the synthetic NLI
    # and paraphrase tasks, stand-ins for MNLI, QQP and Amazon reviews, and cloze questions made from
    # the training articles' contexts (squad2_cloze), the only stand-in that teaches span selection.
    # Fine-tuning batches rows of similar length and cuts their padding (train.trim_padding); the
    # `final` table's exported students answer at their dev-tuned no-answer threshold.
    # Students of rows with a multi-task stage start from layers 0-3 of ROaD-Large (student_from_large):
    # the 4-layer student's own stage of 300 steps did not carry over (README, the `final` table).
    "small": Scale(
        common={"data": {"source": "json", "train_path": f"{SHARED}/squad2-dev/squad2-dev-public.json.gz",
                         "split_dev_questions": 1000, "max_seq_length": 256, "doc_stride": 128,
                         "max_query_length": 64},
                "train": {"batch_size": 16, "learning_rate": 1e-4, "checkpoint_every": 110, "trim_padding": 16},
                "export": {"enabled": False, "null_threshold": "best"}},
        large={"pretrained": "minilm"},
        base={"pretrained": "minilm", "pretrained_layers": [0, 1, 2, 3]},
        teacher_steps=990, student_steps=660,
        multitask={"tasks": ["squad2", "squad2_cloze", "synthetic_nli", "synthetic_para", "sentiment"], "steps": 300,
                   "batch_size": 16, "learning_rate": 1e-4,
                   "task_files": [{"task": "sentiment", "train_path": f"{SHARED}/sst2-dev/sst2-dev-public.tsv.gz",
                                   "split_dev": 100}]},
        ensemble=2, student_from_large=True),
    # ROaD's own configuration, for accelerators with the internet: ELECTRA-Large teachers, an
    # ELECTRA-Base student, TFDS SQuAD 2.0 / MNLI / QQP / SST-2, 40,000 multi-task steps at batch 512.
    "full": Scale(
        common={"data": {"source": "tfds", "tfds_name": "squad/v2.0", "max_seq_length": 384, "doc_stride": 128,
                         "max_query_length": 64},
                "train": {"batch_size": 32, "learning_rate": 1e-4, "mixed_precision": "mixed_bfloat16",
                          "strategy": "mirrored", "checkpoint_every": 1000},
                "export": {"enabled": False}},
        large={"family": "electra", "pretrained": "preset", "preset": "electra_large_discriminator_uncased_en"},
        base={"family": "electra", "pretrained": "preset", "preset": "electra_base_discriminator_uncased_en"},
        teacher_steps=8200, student_steps=8200,
        multitask={"tasks": ["squad2", "mnli", "qqp", "sentiment"], "steps": 40000, "batch_size": 512,
                   "learning_rate": 1e-4},
        ensemble=3),
}


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """A model of the teacher pool: its size, the passes k of its multi-task stage before fine-tuning
    (0: none), and the teacher set (a key of TEACHER_SETS) it is itself distilled from, if any."""

    size: str
    k: int = 0
    distilled_from: str = ""


TEACHERS = {
    "large": TeacherSpec("large"),
    "road_large": TeacherSpec("large", k=4),
    "base": TeacherSpec("base"),
    "road_large_distilled": TeacherSpec("large", k=4, distilled_from="road_large_ensemble"),
}

# Teacher set -> (teacher of the pool, whether it is an ensemble of the scale's size).
TEACHER_SETS = {
    "large": ("large", False),
    "road_large": ("road_large", False),
    "large_ensemble": ("large", True),
    "road_large_ensemble": ("road_large", True),
    "base_ensemble": ("base", True),
    "road_large_distilled": ("road_large_distilled", False),
}

# KD form -> distillation overrides. Hidden-state forms match every layer by TinyBERT's uniform map
# (or the last layer only) through a learned projection; kd_weight 0 leaves the hard loss alone.
# Each hidden form is measured twice: projections started at random (Keras' default) and at the
# identity (`distillation.projection_init`).
HIDDEN_FORMS = {
    "hidden_all": {"kd_weight": 0.0, "hidden_loss": "mse", "layer_map": "uniform"},
    "hidden_last": {"kd_weight": 0.0, "hidden_loss": "mse", "layer_map": "last"},
    "logits_hidden_all": {"hidden_loss": "mse", "layer_map": "uniform"},
    "logits_hidden_last": {"hidden_loss": "mse", "layer_map": "last"},
}
KD_FORMS = {
    "logits": {},
    **HIDDEN_FORMS,
    **{f"{name}_identity": {**form, "projection_init": "identity"} for name, form in HIDDEN_FORMS.items()},
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One row: the student's teacher set (empty: no KD), multi-task passes k (0: no multi-task
    stage) and KD form (a key of KD_FORMS)."""

    name: str
    teachers: str = ""
    k: int = 0
    kd: str = "logits"


TABLES = {
    "teacher_choice": (Row("no_kd"), Row("large", "large"), Row("road_large", "road_large"),
                       Row("large_ensemble", "large_ensemble"), Row("road_large_ensemble", "road_large_ensemble"),
                       Row("base_ensemble", "base_ensemble")),
    "distilled_teacher": (Row("road_large", "road_large"), Row("road_large_distilled", "road_large_distilled")),
    "kd_form": tuple(Row(form, "road_large", kd=form) for form in KD_FORMS),
    "task_passes": (Row("no_multitask", "road_large"),
                    *(Row(f"k{k}", "road_large", k=k) for k in (1, 2, 4, 8))),
    "final": (Row("baseline"), Row("road", "road_large", k=4)),
}

# ROaD's SQuAD 2.0 dev F1 for the rows the write-up reports (ELECTRA-Base student, ELECTRA-Large
# teachers): 4.1's no-KD and single-teacher rows, 5.1's k rows, and 6's final comparison.
ROAD_F1 = {
    "teacher_choice": {"no_kd": 85.0, "large": 86.3, "road_large": 87.3},
    "task_passes": {"k1": 87.2, "k2": 87.5, "k4": 87.6, "k8": 87.4},
    "final": {"baseline": 83.3, "road": 87.6},
}

METRICS = (("EM", "exact"), ("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns F1", "NoAns_f1"),
           ("tuned F1", "tuned_f1"), ("held-out F1", "held_out_tuned_f1"))
HELD_OUT_NOTE = ("Held-out F1 answers each half of the dev articles at the threshold tuned on the other half: "
                 "what a tuned threshold gives on unseen questions (- for runs that predate it).")


class Experiments:
    """Builds and runs the runs of one scale's tables under `output`, reusing finished ones.

    Args:
        scale: a `Scale`; output: the folder of runs, caches and tables, as --output gives it
            (`given`, which error messages show).
    """

    def __init__(self, scale, output):
        # Absolute with symbolic links resolved: run hashes hold the cache and teacher-run paths, so
        # every spelling of one folder (../x, /tmp/x, a link to it) must name its runs alike.
        self.scale, self.given, self.output = scale, pathlib.Path(output), pathlib.Path(output).resolve()
        self.common = merge_overrides(scale.common, {"data": {"cache_dir": str(self.output / "cache")}})
        self.sections = {}

    def config(self, size, seed, steps, k=0, distillation=None, model=None):
        """The Config of one run: a `size` ("large"/"base") model (or the `model` section given),
        `steps` of fine-tuning with `seed`, a k-pass multi-task stage when k > 0, KD when
        `distillation` (a section dict) is given."""
        values = merge_overrides(self.common, {
            "model": model or getattr(self.scale, size), "train": {"steps": steps, "seed": seed},
            "multitask": {**self.scale.multitask, "k": k, "replacement": k > len(self.scale.multitask["tasks"])}
            if k else {},
            "distillation": {"compare_without_kd": False, **(distillation or {})},
        })
        return config_from_dict(values)

    def run(self, role, config):
        """Trains `config` (or reuses its finished run); returns (run directory, metrics.json dict)."""
        config = resolve_teacher_runs(config)
        digest = config_digest(config, 12)
        run_dir = self.output / "runs" / f"{role}-{digest}"
        with RunClock(run_dir):
            metrics, trained = train.train_run(config, run_dir, RUN_FOLDER)
        if trained:
            import keras  # loaded with TensorFlow by the run

            keras.backend.clear_session()
        print(f"{'trained' if trained else 'reused'} {role} run {run_dir}", flush=True)
        return run_dir, metrics

    def teacher_runs(self, spec, ensemble):
        """Run directories of teacher pool model `spec` (a TeacherSpec), seeds 0..n-1 for an ensemble."""
        seeds = range(self.scale.ensemble if ensemble else 1)
        distillation = self.distillation(spec.distilled_from, "logits") if spec.distilled_from else None
        return [self.run("teacher", self.config(spec.size, seed, self.scale.teacher_steps, spec.k, distillation))[0]
                for seed in seeds]

    def distillation(self, teacher_set, kd_form):
        """The distillation section for KD from `teacher_set` in `kd_form`, made once per pair (every
        row and seed after the first reuses it without revisiting the teacher runs)."""
        if (teacher_set, kd_form) not in self.sections:
            self.sections[teacher_set, kd_form] = self._distillation(teacher_set, kd_form)
        return self.sections[teacher_set, kd_form]

    def _distillation(self, teacher_set, kd_form):
        """`distillation`'s section, its teachers trained (or reused) first; logits-only KD reads
        teacher logits cached once for the set."""
        name, ensemble = TEACHER_SETS[teacher_set]
        section = {"teachers": [{"run": str(run)} for run in self.teacher_runs(TEACHERS[name], ensemble)],
                   **KD_FORMS[kd_form]}
        if kd_form != "logits":
            return section
        return {**section, "mode": "offline", "cache_path": str(self.cached_logits(section))}

    def check_output(self):
        """RoadError naming --output as given, before anything is written, when the runs' paths (its
        absolute path) are not UTF-8, when one of the folders the tables write into is something
        else (a file, a dangling link), when it holds other files than the tables'
        (`check_tables_folder`), or when one of those folders cannot be written: the checks of the
        commands it calls would name their own flags (--output-dir, data.cache_dir)."""
        check_utf8(self.output, f"--output {self.given}: its absolute path")
        for name in OUTPUT_FOLDERS:
            self.check_folder(name)
        check_tables_folder(self.given)
        for name in OUTPUT_FOLDERS:
            check_writable_dir(self.given / name, f"--output {self.given}:")

    def check_folder(self, name):
        """`check_folder` of the folder `name` (e.g. "runs") under --output, naming --output as given."""
        check_folder(self.given / name, f"--output {self.given}: ", "move it away or choose another --output")

    def cached_logits(self, section):
        """The teacher-logits cache of an online distillation `section`, written on first use and
        written again when it is damaged (its sidecar unreadable, or records that fail their
        checksums or disagree with the sidecar's count: checked by a read of the file, see
        `verify_feature_cache`)."""
        from road_tf.data.features import InvalidCache, verify_feature_cache  # TensorFlow loads here, if no run did
        from road_tf.distillation.offline import teachers_problem

        config = resolve_teacher_runs(config_from_dict(merge_overrides(self.common, {"distillation": section})))
        checkpoints = [teacher.checkpoint for teacher in config.distillation.teachers]
        key = yaml.safe_dump(checkpoints + [dump_yaml(config.data)])
        self.check_folder("teacher_logits")
        path = self.output / "teacher_logits" / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}.tfrecord"
        try:
            complete = verify_feature_cache(path)
        except InvalidCache as error:
            logging.warning("teacher-logits cache %s is damaged (%s); caching the teachers' logits again",
                            error.path, error.reason)
            complete = False
        if complete and teachers_problem(path, config.distillation.teachers):
            complete = False  # written before caches recorded their teachers
        if not complete:
            cache_teacher.cache_teacher_logits(config, str(path))
        return path

    def student(self, row, seed):
        """(run directory, metrics) of `row`'s student with `seed`; with `student_from_large`, a row
        with a multi-task stage starts from the large model that passed it instead."""
        distillation = self.distillation(row.teachers, row.kd) if row.teachers else None
        if not (row.k and self.scale.student_from_large):
            return self.run("student", self.config("base", seed, self.scale.student_steps, row.k, distillation))
        large = self.teacher_runs(TeacherSpec("large", k=row.k), ensemble=False)[0]
        model = {**{key: value for key, value in self.scale.base.items() if key not in MODEL_SIZE_FIELDS},
                 "pretrained": str(large)}
        return self.run("student", self.config("base", seed, self.scale.student_steps, 0, distillation, model))


OUTPUT_FOLDERS = ("runs", "cache", "cache/features", "teacher_logits", "saved_models")
SCALE_FILE = "scale.json"


def check_tables_folder(output):
    """RoadError when the folder `output` (--output as given) holds files but none of the tables':
    the tables resume in their own folder (it holds the `scale.json` they write first, or, made
    before it, a TABLE.md) or start in an empty or new one, and must not scatter their runs,
    caches and tables among other files (a home folder, the repository, a training run's folder)
    nor overwrite a TABLE.md of someone else's."""
    entries = visible_entries(output, "--output")
    if entries and SCALE_FILE not in entries and not _tables_scale(output):
        raise RoadError(f"--output {output}: a folder holding other files ({first_few(sorted(entries))}), not "
                        f"road_tf.experiments' tables (no {SCALE_FILE} or TABLE.md); choose a new or empty folder")


def check_scale(output, scale_name):
    """Records `scale_name` in `<output>/scale.json`; RoadError when the folder holds another scale's
    runs and tables (from scale.json, or for folders made before it from a TABLE.md heading), whose
    tables this command would overwrite.

    Args:
        output: --output as given; scale_name: --scale.
    """
    path = output / SCALE_FILE
    if path.exists() or path.is_symlink():
        try:
            recorded = json.loads(read_config_bytes(path, "scale record"))["scale"]
            if recorded not in SCALES:
                raise ValueError(f"unknown scale {recorded!r}")
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise RoadError(f"{path}: not a scale record ({type(error).__name__}: {first_line(error)}); "
                            f'write {{"scale": "{scale_name}"}} into it if the folder holds that scale') from None
        source = path.name
    else:
        recorded, source = _tables_scale(output) or (None, None)
    if recorded and recorded != scale_name:
        raise RoadError(f"--output {output}: holds the {recorded} scale's runs and tables ({source}), which "
                        f"--scale {scale_name} would overwrite; choose another --output")
    if not path.exists():
        write_atomic(path, json.dumps({"scale": scale_name}) + "\n")


def _tables_scale(output):
    """(scale, file name) of the first TABLE.md in the folder `output` whose heading names a scale, or None."""
    return next(((scale, md.name) for md in sorted(output.glob("*.md")) if (scale := _table_scale(md))), None)


def _table_scale(path):
    """The scale in a TABLE.md heading ("# final (small scale)"), or None (also for a pipe, which
    would keep the read waiting, or a device)."""
    try:
        if entry_kind(path) != "a file":
            return None
        with open(path, encoding="utf-8") as handle:
            words = handle.readline(200).split()
    except (OSError, ValueError):
        return None
    if len(words) == 4 and words[0] == "#" and words[1] in TABLES and words[3] == "scale)" and \
            words[2].lstrip("(") in SCALES:
        return words[2].lstrip("(")
    return None


def seed_count(table, scale, seeds):
    """Student seeds of a table: --seeds, else the scale's final_seeds for `final` and 1 otherwise."""
    return seeds or (scale.final_seeds if table == "final" else 1)


def run_table(table, experiments, seeds, row_names=()):
    """Trains (or reuses) the rows of `table` named in `row_names` (every row when empty) for each
    seed; returns [(row, [(run dir, metrics)])] in the table's order."""
    results = []
    for row in TABLES[table]:
        if row_names and row.name not in row_names:
            continue
        runs = [experiments.student(row, seed) for seed in range(seeds)]
        results.append((row, runs))
    return results


def export_rows(table, results, output):
    """Exports every run of the `final` table to `<output>/saved_models/<row>_seed<i>/` as a new
    version, unless that folder's newest version already comes from the run (a changed scale makes
    new runs, whose models then replace the old ones as the served version)."""
    if table != "final":
        return
    from road_tf.saved_model import newest_is_from  # loads TensorFlow, if no run did

    for row, runs in results:
        for seed, (run_dir, _) in enumerate(runs):
            name = f"{row.name}_seed{seed}"
            folder = output / "saved_models" / name
            check_folder(folder, remedy=f"move it away: the `final` table exports row {name} there")
            if not newest_is_from(folder, run_dir):
                export.export_run(run_dir, name, str(output / "saved_models"))


def summarise(table, results):
    """One dict per row: mean and standard deviation over seeds of each metric (NaN when a run lacks
    it; the standard deviation also NaN for one seed, whose spread is not measured), minutes, ROaD's F1."""
    rows = []
    for row, runs in results:
        finals = [_final_metrics(run_dir, metrics) for run_dir, metrics in runs]
        summary = {"row": row.name, "seeds": len(runs), "minutes": statistics.mean(recorded_minutes(d) for d, _ in runs),
                   "road_f1": ROAD_F1.get(table, {}).get(row.name)}
        for label, key in METRICS:
            values = [final[key] for final in finals if key in final]
            if len(values) < len(finals):
                summary[label] = summary[f"{label} std"] = math.nan
                continue
            summary[label] = statistics.mean(values)
            summary[f"{label} std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        summary["no_answer_f1"] = 100.0 * finals[0]["NoAns_total"] / finals[0]["total"]
        rows.append(summary)
    return rows


def _final_metrics(run_dir, metrics):
    """The `final` section of a run's metrics, checked for what a table needs (a dev split of
    `total` > 0 questions, `NoAns_total` of them unanswerable); RoadError naming its metrics.json."""
    final = metrics.get("final") if isinstance(metrics, dict) else None
    counts = [final.get(key) for key in ("total", "NoAns_total")] if isinstance(final, dict) else [None, None]
    if not all(is_finite_number(n) for n in counts) or \
            not 0 <= counts[1] <= counts[0] or counts[0] <= 0:
        raise RoadError(f"{pathlib.Path(run_dir) / RUN_METRICS_FILE}: its final metrics lack a SQuAD 2.0 dev split "
                        f"(total {counts[0]!r}, NoAns_total {counts[1]!r}: need 0 <= NoAns_total <= total, total > 0); "
                        "delete the run folder to train it again")
    return final


def table_csv(rows):
    """CSV text of summarised rows (an empty cell for a missing value)."""
    columns = ["row", "seeds"] + [c for label, _ in METRICS for c in (label, f"{label} std")] + [
        "minutes", "road_f1", "no_answer_f1"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v))
                             else f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def table_markdown(table, scale_name, rows, command):
    """The Markdown table of summarised rows, with the command and the always-"no answer" F1."""
    lines = [f"# {table} ({scale_name} scale)", "", f"`{command}`", "",
             "| row | " + " | ".join(label for label, _ in METRICS) + " | seeds | minutes | ROaD F1 |",
             "|---|" + "---:|" * (len(METRICS) + 3)]
    for row in rows:
        cells = [_mean_and_spread(row[label], row[f"{label} std"]) for label, _ in METRICS]
        road = f"{row['road_f1']:.1f}" if row["road_f1"] is not None else "-"
        lines.append(f"| {row['row']} | " + " | ".join(cells) + f" | {row['seeds']} | {row['minutes']:.1f} | {road} |")
    total = sum(row["minutes"] * row["seeds"] for row in rows)
    lines += ["", f"Always \"no answer\" on this dev split: F1 {rows[0]['no_answer_f1']:.2f}. "
              f"{threshold_note(scale_name)} ± is the standard deviation over seeds (none for a row of one seed: "
              f"its spread is not measured); minutes are training minutes per seed, {total:.1f} for all the rows' "
              "runs (their teachers and cached teacher logits not counted).", ""]
    return "\n".join(lines)


def _mean_and_spread(mean, std):
    """A Markdown cell: "-" for a missing mean, "mean ± std", or the mean alone when std is NaN."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def threshold_note(scale_name):
    """Which no-answer threshold a scale's EM/F1 columns are scored at."""
    if SCALES[scale_name].common.get("export", {}).get("null_threshold") == "best":
        return ("EM/F1 are scored at each run's served no-answer threshold, tuned on this same dev split "
                f"(export.null_threshold=best), so they are optimistic, like tuned F1. {HELD_OUT_NOTE}")
    return ("EM/F1 use the fixed null threshold 0; tuned F1 picks the best threshold on the same dev split "
            f"(optimistic). {HELD_OUT_NOTE}")


def table_plot(table, scale_name, rows, path):
    """Writes the table's F1 as points with error bars (std over seeds, none for one seed) beside the
    always-"no answer" line and, in a second panel on its own scale, ROaD's F1 for the same rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    road = [(row["row"], row["road_f1"]) for row in rows if row["road_f1"] is not None]
    panels = 2 if road else 1
    figure, axes = plt.subplots(1, panels, figsize=(max(6.0, 1.3 * len(rows)) + 3.0 * (panels - 1), 4.2),
                                squeeze=False, gridspec_kw={"width_ratios": [len(rows), max(len(road), 2)][:panels]})
    ours = axes[0][0]
    _plot_points(ours, [row["row"] for row in rows], [row["F1"] for row in rows], 2,
                 f"{table}: road_tf, {scale_name} scale", yerr=[row["F1 std"] for row in rows], fmt="o",
                 label=f"road_tf, {scale_name} scale")
    ours.axhline(rows[0]["no_answer_f1"], color="gray", linestyle="--", label='always "no answer"')
    ours.legend(fontsize=8, loc="best")
    if road:
        names, values = zip(*road)
        _plot_points(axes[0][1], names, values, 1, "ROaD (ELECTRA, full scale)", fmt="s", color="tab:orange")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def _plot_points(axis, names, values, decimals, title, **style):
    """Draws F1 `values` as points above the row `names` (x = 0..n-1), each labelled with its value
    to `decimals` places; `style` goes to `errorbar` (yerr, fmt, label, color)."""
    axis.errorbar(range(len(names)), values, capsize=4, **style)
    for position, value in enumerate(values):
        axis.annotate(f"{value:.{decimals}f}", (position, value), textcoords="offset points", xytext=(8, -3),
                      fontsize=8)
    axis.set_xticks(list(range(len(names))), names, rotation=20, ha="right")
    axis.set_xlim(-0.6, len(names) - 0.4)
    axis.margins(y=0.3)
    axis.set_ylabel("SQuAD 2.0 dev F1")
    axis.set_title(title, fontsize=10)


def write_table(table, scale_name, rows, output, command):
    """Writes TABLE.md, TABLE.csv and TABLE.png into `output`."""
    write_atomic(output / f"{table}.md", table_markdown(table, scale_name, rows, command))
    write_atomic(output / f"{table}.csv", table_csv(rows))
    table_plot(table, scale_name, rows, output / f"{table}.png")


def parse_args(argv):
    parser = ArgumentParser(prog="python -m road_tf.experiments",
                            description="Run one of ROaD's experiment tables (or all) and write TABLE.md/.csv/.png.")
    parser.add_argument("table", choices=[*TABLES, "all"], help="which table")
    parser.add_argument("--scale", required=True, choices=list(SCALES), help="tiny (synthetic, minutes), small "
                        "(real data offline, 2 CPU cores), full (ROaD's sizes; accelerators and the internet)")
    parser.add_argument("--output", type=nonempty, help="folder for runs and tables (default results/<scale>)")
    parser.add_argument("--seeds", type=bounded(whole_number, 1, 100, "a whole number in [1, 100]"),
                        help="student seeds per row, at most 100 (default: 3 for final, 1 for the others)")
    parser.add_argument("--rows", help="comma-separated rows of TABLE to run (default: all); the written table "
                        "holds these rows only")
    args = parser.parse_args(argv)
    args.rows = parse_rows(parser, args.table, args.rows)
    return args


def parse_rows(parser, table, rows):
    """--rows as a tuple of row names of `table` (empty: every row); unknown or repeated names are a
    usage error."""
    if rows is None:
        return ()
    if table == "all":
        parser.error("--rows: needs one TABLE, not all")
    names = tuple(name.strip() for name in rows.split(","))
    known = [row.name for row in TABLES[table]]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"--rows: {table} has no row {unknown[0]!r} (rows: {', '.join(known)})")
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        parser.error(f"--rows: names {repeated[0]!r} twice")
    return names


def resume_hint(given):
    """How to resume the tables stopped in --output `given` (as given), in words: runs are found by
    their configs' hashes, so the same command reuses the finished ones and resumes the stopped one."""
    if not given.exists():
        return "the tables had not started"
    return (f"the same command resumes the tables in {given} (finished runs are reused, a stopped run goes on "
            "from its last checkpoint)")


@cli_main
def main(argv=None):
    args = parse_args(argv)
    given = pathlib.Path(args.output or f"results/{args.scale}")
    with one_line_when_stopped(lambda: resume_hint(given)):
        return run_tables(args, given)


def run_tables(args, given):
    """Checks --output `given` (as given), then runs and writes the tables the parsed flags `args` ask
    for, each printed once written -> 0."""
    check_writable_dir(given, "--output")
    scale = SCALES[args.scale]
    experiments = Experiments(scale, given)
    experiments.check_output()
    check_scale(given, args.scale)
    output = experiments.output
    tables = list(TABLES) if args.table == "all" else [args.table]
    for table in tables:
        seeds = seed_count(table, scale, args.seeds)
        results = run_table(table, experiments, seeds, args.rows)
        export_rows(table, results, output)
        command = f"python -m road_tf.experiments {table} --scale {args.scale}" + (
            f" --seeds {args.seeds}" if args.seeds else "") + (f" --rows {','.join(args.rows)}" if args.rows else "")
        write_table(table, args.scale, summarise(table, results), output, command)
        logging.info("wrote %s", output / f"{table}.md")
        print((output / f"{table}.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
