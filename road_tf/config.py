"""Frozen, validated run configuration: dataclass defaults, YAML overrides, `--set a.b=c`.

A run's configuration is `Config()` (the embedded default) updated by a recipe YAML that holds only
overrides, then by `--set` pairs. Every field is checked when the config is built, and a bad
field is reported by its dotted name.
"""

import collections
import dataclasses
import hashlib
import math
import pathlib
import shlex
import typing
from typing import Optional, Tuple

import yaml

from road_tf.errors import DECIMAL_NUMBER, ConfigError, decimal_integer, first_line, shown, utf8_problem
from road_tf.files import entry_kind, read_config_bytes, require_folder
from road_tf.registry import KD_LOSSES, SPAN, TASKS

ENCODER_WEIGHTS = "encoder.weights.h5"  # a stage's encoder weights, which `model.pretrained` reads
STAGE_WEIGHTS = "model.weights.h5"  # a stage's task model weights
STUDENT_STAGE = "student"  # the stage folder of the model a run exports
RUN_CONFIG_FILE = "config.yaml"  # a run's whole resolved config, written when it starts
RUN_METRICS_FILE = "metrics.json"  # a run's dev metrics, written when it has finished training

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SERVING_PRECISIONS = ("float32", "bfloat16")
# How a hidden-KD projection starts -> its Keras kernel initializer: Keras' default (glorot uniform),
# or the identity (an eye matrix, cut to the widths), so that a student whose states already
# resemble the teacher's starts from them.
PROJECTION_INITS = {"random": "glorot_uniform", "identity": "identity"}
# Fields added after runs were named by a hash of their config's dump (train's runs/<recipe>-<hash>,
# the experiment tables' runs): left out of the dump at these defaults, which behave as the runs
# made before the field did, so those runs keep their names. These defaults must never change.
OMITTED_AT_DEFAULT = {("distillation", "projection_init"): "random", ("data", "unanswerable_share"): 0.0}
MAX_STEPS = 2**31 - 1  # the most steps (or steps per checkpoint) a run may ask for
MAX_YAML_DEPTH = 100  # the deepest bracket nesting a recipe or --set value may have
MAX_TEXT_BYTES = 1 << 30  # the largest data.max_context_bytes: a text cannot outgrow the 1 GiB a data file may hold
MAX_SEQ_LENGTH = 16384  # the longest data.max_seq_length (and train.trim_padding multiple) a run may ask for
MAX_N_BEST = 1000  # the most spans decode.n_best_size may keep a question (SQuAD's own evaluation keeps 20)
MAX_WINDOW_GROUP = 1024  # the most windows export.window_group_size may put in one encoder call
MAX_TEACHERS = 32  # the most teachers a run may distill from (ROaD's ensembles have 2 to 5; each is a whole model)
# The KD temperatures a run may ask for: the loss divides logits by T and scales by T**2 in float32,
# whose range T**2 leaves beyond these (1e-300 made every step's loss NaN, 1e300 stopped the stage).
KD_TEMPERATURES = (1e-18, 1e18)


NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
MAX_TAGGED_NUMBER_CHARS = 100
"""The longest `!!int` or `!!float` text a recipe may give: a 64-bit number in binary with underscores fits."""


class RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases and duplicate keys, whose plain scalars are text or null.

    A few hundred bytes of nested aliases stand for billions of values, and a repeated key would
    silently drop the first one's settings. Plain scalars are not typed by YAML 1.1's guesses
    (`010` is 8, `1:30` is 90, `0x10` is 16, `yes` is true, `1.10` is 1.1): the field each one
    sets converts its text (`_coerce`), so `train.steps: 010` is 10 and `export.model_name: 1.10`
    stays "1.10". Only `null`, `~` and an empty value stay null, which every field refuses (no
    field is optional), rather than becoming the text "null" (a model named null, a folder `~`).
    """

    yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        if any(tag == "tag:yaml.org,2002:null" for tag, _ in resolvers)}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"line {event.start_mark.line + 1}: aliases (*{event.anchor}) are not allowed in recipes",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):
        """PyYAML's construction, whose own failures on a tagged scalar are ConstructorErrors by line:
        `!!int` with no digits raised IndexError, `!!bool x` KeyError, `!!timestamp x` AttributeError.
        A `!!int` or `!!float` longer than MAX_TAGGED_NUMBER_CHARS is refused unbuilt: PyYAML builds
        hexadecimal ints of any size (whose decimal text Python then refuses to write) and base-60
        ones (`1:1:1:...`) in quadratic time."""
        if (isinstance(node, yaml.ScalarNode) and node.tag in NUMBER_TAGS
                and len(node.value) > MAX_TAGGED_NUMBER_CHARS):
            raise yaml.constructor.ConstructorError(
                None, None, f"line {node.start_mark.line + 1}: {shown(node.value)} is too long for a "
                f"{node.tag.replace('tag:yaml.org,2002:', '!!')} (at most {MAX_TAGGED_NUMBER_CHARS} characters)",
                node.start_mark)
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            value = shown(node.value) if isinstance(node, yaml.ScalarNode) else "the value"
            raise yaml.constructor.ConstructorError(
                None, None, f"line {node.start_mark.line + 1}: {value} is not a valid "
                f"{node.tag.replace('tag:yaml.org,2002:', '!!')} ({type(error).__name__}: {first_line(error)})",
                node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):  # e.g. `!!set x`: the base class says what it expected
            return super().construct_mapping(node, deep)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the base class refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"line {key_node.start_mark.line + 1}: duplicate key {shown(key)}",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _check(condition, field, why):
    if not condition:
        raise ConfigError(f"{field}: {why}")


PRETRAINED_KEYWORDS = ("none", "minilm", "preset")
"""The `model.pretrained` values that name no path (any other value is a checkpoint folder or a run)."""
MODEL_SIZE_FIELDS = ("num_layers", "num_heads", "hidden_dim", "intermediate_dim")
"""The encoder sizes of a random init; a pretrained encoder has its own."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The encoder. `pretrained`: none (random init), minilm (the offline MiniLM package),
    preset (keras-hub `preset`, downloads), a path to a Hugging Face checkpoint folder, or a
    finished road_tf run directory (the encoder of the model it exported, as its fine-tuning left
    it). The size fields (num_layers, num_heads, hidden_dim, intermediate_dim) are for random init
    only: a pretrained encoder has its own, and `load_config` refuses a size set beside one.
    `dropout` is the rate of every dropout layer, the encoder's (a pretrained one's too, in place of
    its checkpoint's; 0.1 in the MiniLM and keras-hub's BERT and ELECTRA presets) and the heads'.

    `pretrained_layers` (minilm, a Hugging Face folder or a run only): the checkpoint's transformer
    layers the encoder keeps, strictly increasing from 0; encoder layer i starts from checkpoint
    layer pretrained_layers[i], embeddings and pooler as usual. () keeps every layer. E.g. [1, 3, 5]
    makes a 3-layer student of the 6-layer MiniLM that keeps its top layer; [0, 1, 2, 3] of a
    fine-tuned 6-layer teacher's run makes a student that starts from the teacher's lower layers.
    """

    family: str = "bert"
    pretrained: str = "none"
    preset: str = ""
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 64
    intermediate_dim: int = 256
    dropout: float = 0.1
    pretrained_layers: Tuple[int, ...] = ()

    def validate(self, prefix="model"):
        _check(self.family in ("bert", "electra"), f"{prefix}.family", f"must be bert or electra, got {self.family!r}")
        try:
            is_path = "/" in self.pretrained or pathlib.Path(self.pretrained).exists()
        except OSError:
            is_path = False
        _check(self.pretrained in PRETRAINED_KEYWORDS or is_path,
               f"{prefix}.pretrained",
               f"must be none, minilm, preset, a checkpoint folder or a run directory, got {self.pretrained!r}")
        _check(self.pretrained != "preset" or self.preset, f"{prefix}.preset", "is required when pretrained is 'preset'")
        for name, most in zip(MODEL_SIZE_FIELDS, (256, 1024, 65536, 262144)):
            _check(0 < getattr(self, name) <= most, f"{prefix}.{name}", f"must be in [1, {most}], got {getattr(self, name)}")
        _check(self.hidden_dim % self.num_heads == 0, f"{prefix}.hidden_dim",
               f"must be divisible by num_heads ({self.num_heads}), got {self.hidden_dim}")
        _check(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", f"must be in [0, 1), got {self.dropout}")
        layers = self.pretrained_layers
        _check(not layers or self.pretrained not in ("none", "preset"), f"{prefix}.pretrained_layers",
               f"picks checkpoint layers, so it needs pretrained minilm, a checkpoint folder or a run, not {self.pretrained!r}")
        _check(all(layer >= 0 for layer in layers), f"{prefix}.pretrained_layers",
               f"layer indices must be non-negative, got {list(layers)}")
        _check(all(a < b for a, b in zip(layers, layers[1:])), f"{prefix}.pretrained_layers",
               f"must be strictly increasing, got {list(layers)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how they are cut into windows.

    `source`: synthetic (generated under `cache_dir`, runs/cache by default), json (local SQuAD/TSV files at
    `train_path`/`dev_path`) or tfds (TFDS `tfds_name`, by default the main task's own dataset,
    e.g. squad/v2.0).
    """

    source: str = "synthetic"
    train_path: str = ""
    dev_path: str = ""
    tfds_name: str = ""
    synthetic_seed: int = 0
    synthetic_train_size: int = 1200
    synthetic_dev_size: int = 200
    vocab: str = "minilm"
    max_seq_length: int = 128
    doc_stride: int = 64
    max_query_length: int = 32
    max_train_examples: int = 0
    max_eval_examples: int = 0
    skip_bad_records: bool = False
    cache_dir: str = ""
    # > 0: take the dev split out of train_path (SQuAD JSON) by whole articles, in sha256(title)
    # order, until it holds this many questions; dev_path is then not read.
    split_dev_questions: int = 0
    # Longest question or context (or classification text) a reader accepts, in UTF-8 bytes; longer
    # records are errors (skipped with skip_bad_records). SQuAD's longest paragraphs are a few KB.
    # An exported QA model refuses a longer question or context too (QAAnswerer).
    max_context_bytes: int = 100_000
    # > 0: for this share of the main span task's answerable training questions, also the question
    # asked of its context without its answers' sentences, unanswerable (road_tf/data/unanswerable.py);
    # max_train_examples counts these copies.
    unanswerable_share: float = 0.0

    def validate(self, prefix="data"):
        _check(self.source in ("synthetic", "json", "tfds"), f"{prefix}.source",
               f"must be synthetic, json or tfds, got {self.source!r}")
        if self.source == "json":
            _check(bool(self.train_path) or bool(self.dev_path), f"{prefix}.train_path", "is required when source is json")
        _check(self.split_dev_questions >= 0, f"{prefix}.split_dev_questions", "must be 0 (off) or positive")
        _check(not self.split_dev_questions or (self.source == "json" and self.train_path), f"{prefix}.split_dev_questions",
               "splits data.train_path, so it needs data.source=json and a train_path")
        _check(not (self.split_dev_questions and self.dev_path), f"{prefix}.dev_path",
               f"is not read when {prefix}.split_dev_questions > 0 (dev comes out of train_path): set one of them")
        _check(16 <= self.max_seq_length <= MAX_SEQ_LENGTH, f"{prefix}.max_seq_length",
               f"must be in [16, {MAX_SEQ_LENGTH}], got {self.max_seq_length}")
        _check(0 < self.max_query_length < self.max_seq_length - 3, f"{prefix}.max_query_length",
               f"must be positive and leave room for the context in max_seq_length ({self.max_seq_length})")
        _check(0 < self.doc_stride <= self.max_seq_length - self.max_query_length - 3, f"{prefix}.doc_stride",
               f"must be positive and at most max_seq_length - max_query_length - 3, got {self.doc_stride}")
        for name in ("synthetic_train_size", "synthetic_dev_size"):
            _check(0 < getattr(self, name) <= 10_000_000, f"{prefix}.{name}",
                   f"must be in [1, 10000000], got {getattr(self, name)}")
        _check(0 <= self.synthetic_seed < 2**32, f"{prefix}.synthetic_seed", f"must be in [0, 2**32), got {self.synthetic_seed}")
        _check(0 < self.max_context_bytes <= MAX_TEXT_BYTES, f"{prefix}.max_context_bytes",
               f"must be in [1, {MAX_TEXT_BYTES}] (1 GiB, the largest data file read), got {self.max_context_bytes}")
        for name in ("max_train_examples", "max_eval_examples"):
            _check(getattr(self, name) >= 0, f"{prefix}.{name}", "must be 0 (all) or positive")
        _check(0.0 <= self.unanswerable_share <= 1.0, f"{prefix}.unanswerable_share",
               f"must be in [0, 1], got {self.unanswerable_share}")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """One teacher: its encoder, its weight in the ensemble, and how it is obtained.

    `run`: a finished road_tf run directory whose exported student is the teacher (its model
    section and `student/model.weights.h5`; see `resolve_teacher_runs`), so a recipe names the
    run that made its teacher instead of a copied path. `checkpoint`: Keras weights (.weights.h5,
    .keras) of a model built from `model`. With neither, the run trains the teacher first on the
    same data for `train_steps` steps (or takes it whole from a Hugging Face QA folder).
    """

    model: ModelConfig = ModelConfig(num_layers=4, hidden_dim=128, num_heads=4, intermediate_dim=512)
    weight: float = 1.0
    checkpoint: str = ""
    train_steps: int = 0
    run: str = ""

    def validate(self, prefix):
        self.model.validate(f"{prefix}.model")
        _check(self.weight > 0, f"{prefix}.weight", f"must be positive, got {self.weight}")
        _check(not (self.run and self.checkpoint and self.checkpoint != run_weights(self.run)), f"{prefix}.run",
               "names the teacher's run, which gives its checkpoint: leave checkpoint empty")
        _check(0 <= self.train_steps <= MAX_STEPS, f"{prefix}.train_steps", f"must be in [0, {MAX_STEPS}], got {self.train_steps}")


@dataclasses.dataclass(frozen=True)
class LayerMatch:
    """One hidden-state match: teacher layer, student layer (0 = embedding output), weight."""

    teacher_layer: int
    student_layer: int
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class DistillationConfig:
    """Knowledge distillation from one or more teachers (off when `teachers` is empty)."""

    teachers: Tuple[TeacherConfig, ...] = ()
    mode: str = "online"
    cache_path: str = ""
    ensemble: str = "probs"
    hard_loss: str = "ce"
    kd_loss: str = "kl"
    kd_weight: float = 0.5
    kd_weight_schedule: str = "constant"
    kd_weight_end: float = 0.5
    temperature: float = 2.0
    temperature_schedule: str = "constant"
    temperature_end: float = 2.0
    hidden_loss: str = "none"
    hidden_weight: float = 1.0
    projection_init: str = "random"
    layer_map: str = "last"
    layer_matches: Tuple[LayerMatch, ...] = ()
    compare_without_kd: bool = True

    def validate(self, prefix="distillation"):
        _check(len(self.teachers) <= MAX_TEACHERS, f"{prefix}.teachers",
               f"lists {len(self.teachers)} teachers, more than the {MAX_TEACHERS} a run may distill from")
        for i, teacher in enumerate(self.teachers):
            teacher.validate(f"{prefix}.teachers[{i}]")
        _check(self.mode in ("online", "offline"), f"{prefix}.mode", f"must be online or offline, got {self.mode!r}")
        _check(self.ensemble in ("probs", "logits"), f"{prefix}.ensemble", f"must be probs or logits, got {self.ensemble!r}")
        _check(0.0 <= self.kd_weight <= 1.0, f"{prefix}.kd_weight", f"must be in [0, 1], got {self.kd_weight}")
        _check(0.0 <= self.kd_weight_end <= 1.0, f"{prefix}.kd_weight_end", f"must be in [0, 1], got {self.kd_weight_end}")
        low, high = KD_TEMPERATURES
        for name in ("temperature", "temperature_end"):
            _check(low <= getattr(self, name) <= high, f"{prefix}.{name}",
                   f"must be in [{low:g}, {high:g}] (the KD loss scales by its square in float32), got {getattr(self, name)}")
        for name in ("kd_weight_schedule", "temperature_schedule"):
            _check(getattr(self, name) in ("constant", "linear"), f"{prefix}.{name}",
                   f"must be constant or linear, got {getattr(self, name)!r}")
        _check(self.layer_map in ("uniform", "last", "custom"), f"{prefix}.layer_map",
               f"must be uniform, last or custom, got {self.layer_map!r}")
        _check(self.layer_map != "custom" or self.layer_matches, f"{prefix}.layer_matches",
               "must list {teacher_layer, student_layer, weight} entries when layer_map is custom")
        _check(self.layer_map == "custom" or not self.layer_matches, f"{prefix}.layer_matches",
               f"{len(self.layer_matches)} entries given but layer_map is {self.layer_map}; "
               "set layer_map: custom to use them")
        pairs = collections.Counter((match.teacher_layer, match.student_layer) for match in self.layer_matches)
        repeated = next((pair for pair, count in pairs.items() if count > 1), None)
        _check(repeated is None, f"{prefix}.layer_matches",
               f"gives the pair (teacher_layer, student_layer) {repeated} more than once; give each pair once, with "
               "its weight")
        if self.mode == "offline":
            _check(bool(self.cache_path), f"{prefix}.cache_path",
                   "is required in offline mode (write it with python -m road_tf.cache_teacher)")
            _check(bool(self.teachers), f"{prefix}.teachers", "offline mode needs the teachers whose logits are cached")
        _check(not (self.mode == "offline" and self.hidden_loss != "none"), f"{prefix}.hidden_loss",
               "hidden-state KD needs an online teacher (offline caches hold logits only)")
        for i, teacher in enumerate(self.teachers):
            _check(self.mode != "offline" or teacher.checkpoint or teacher.run, f"{prefix}.teachers[{i}].checkpoint",
                   "is required in offline mode: the cache is checked to hold this teacher's logits (or name its run)")
        _check(self.hidden_weight >= 0, f"{prefix}.hidden_weight", "must be non-negative")
        _check(self.projection_init in PROJECTION_INITS, f"{prefix}.projection_init",
               f"must be {' or '.join(PROJECTION_INITS)}, got {self.projection_init!r}")
        _check(self.hidden_loss in ("none", "mse"), f"{prefix}.hidden_loss", f"must be none or mse, got {self.hidden_loss!r}")
        _check(self.kd_loss in KD_LOSSES, f"{prefix}.kd_loss",
               f"unknown loss {self.kd_loss!r}; known: {', '.join(KD_LOSSES)}")
        _check(not (self.kd_loss == "mse" and self.ensemble == "probs" and len(self.teachers) > 1), f"{prefix}.ensemble",
               "probs averages the teachers' probabilities, but kd_loss mse compares logits: set ensemble: logits "
               "(the teachers' weighted mean logits) or kd_loss: kl or ce")
        _check(self.hard_loss == "ce", f"{prefix}.hard_loss", f"unknown loss {self.hard_loss!r}; known: ce")


@dataclasses.dataclass(frozen=True)
class TaskFiles:
    """Local files of one non-main task of the multi-task stage, read with the task's own reader.

    `split_dev` = N > 0 takes the dev split out of `train_path` (then `dev_path` stays empty): the
    examples in order of sha256 of their text (text_a, or text_a TAB text_b; a question TAB its
    context), the first N to dev and the rest to train.
    """

    task: str
    train_path: str
    dev_path: str = ""
    split_dev: int = 0

    def validate(self, prefix):
        _check(bool(self.train_path), f"{prefix}.train_path", "is required")
        _check(self.split_dev >= 0, f"{prefix}.split_dev", f"must be 0 (off) or positive, got {self.split_dev}")
        _check(not (self.split_dev and self.dev_path), f"{prefix}.dev_path",
               "must be empty when split_dev takes the dev split out of train_path")
        _check(bool(self.split_dev or self.dev_path), f"{prefix}.dev_path", "is required unless split_dev is positive")


@dataclasses.dataclass(frozen=True)
class MultitaskConfig:
    """Multi-task pre-training before fine-tuning (off when `steps` is 0).

    `batch_size` is the constant global batch B of one optimizer step, split into k passes of B/k
    (0 means `train.batch_size`). `task_files` gives tasks other than the main one local files
    (`TaskFiles`), read whatever `data.source` is; the other tasks read the synthetic corpus or TFDS.
    """

    tasks: Tuple[str, ...] = ("squad2", "synthetic_nli", "synthetic_para", "synthetic_sentiment")
    steps: int = 0
    k: int = 2
    sampler: str = "uniform"
    temperature: float = 1.0
    replacement: bool = False
    learning_rate: float = 5e-4
    batch_size: int = 0
    task_files: Tuple[TaskFiles, ...] = ()

    def files_of(self, task):
        """The `TaskFiles` of task `task`, or None when `task_files` does not list it."""
        return next((files for files in self.task_files if files.task == task), None)

    def validate(self, prefix="multitask"):
        _check(self.tasks, f"{prefix}.tasks", "must list at least one task")
        for task in self.tasks:
            _check(task in TASKS, f"{prefix}.tasks", f"unknown task {task!r}; known: {', '.join(TASKS)}")
        _check(0 <= self.steps <= MAX_STEPS, f"{prefix}.steps", f"must be in [0, {MAX_STEPS}], got {self.steps}")
        _check(self.k in (1, 2, 4, 8), f"{prefix}.k", f"must be 1, 2, 4 or 8, got {self.k}")
        _check(self.replacement or self.k <= len(self.tasks), f"{prefix}.k",
               f"k={self.k} tasks without replacement needs at least k tasks, have {len(self.tasks)}")
        _check(self.sampler in ("uniform", "proportional", "temperature", "annealed"), f"{prefix}.sampler",
               f"must be uniform, proportional, temperature or annealed, got {self.sampler!r}")
        _check(self.temperature > 0, f"{prefix}.temperature", "must be positive")
        _check(self.learning_rate > 0, f"{prefix}.learning_rate", f"must be positive, got {self.learning_rate}")
        _check(self.batch_size >= 0, f"{prefix}.batch_size", "must be 0 (use train.batch_size) or positive")
        _check(len(set(self.tasks)) == len(self.tasks), f"{prefix}.tasks", "lists a task more than once")
        listed = [files.task for files in self.task_files]
        for i, files in enumerate(self.task_files):
            _check(files.task in self.tasks, f"{prefix}.task_files[{i}].task",
                   f"{files.task!r} is not one of multitask.tasks ({', '.join(self.tasks)})")
            _check(files.task not in listed[:i], f"{prefix}.task_files[{i}].task", f"lists {files.task!r} a second time")
            files.validate(f"{prefix}.task_files[{i}]")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop and where it runs."""

    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    # Layer-wise learning-rate decay (ELECTRA's fine-tuning: 0.8 for Base, 0.9 for Large): with L
    # layers, layer i trains at layer_lr_decay ** (L - i) times the rate, the embeddings at
    # layer_lr_decay ** (L + 1), the heads at the full rate; in every stage. 1: one rate for all.
    layer_lr_decay: float = 1.0
    seed: int = 0
    strategy: str = "default"
    tpu_address: str = ""
    mixed_precision: str = "float32"
    jit_compile: bool = False
    checkpoint_every: int = 100
    steps_per_execution: int = 1
    # 0: every batch keeps all max_seq_length positions. m > 0: rows of similar length are batched
    # together and each batch is cut to its longest row rounded up to a multiple of m (fewer padded
    # positions to compute; single-task stages only, not on TPUs, which need fixed shapes).
    trim_padding: int = 0
    # Score the dev split every this many steps of each stage (0: only at the end of the stage).
    eval_every: int = 0
    # Which weights a stage ends with: "last" (its final step) or "best" (its best dev score of the
    # evaluations eval_every made).
    keep: str = "last"
    # Keep a finished stage's intermediate checkpoints (by default only its kept weights remain).
    keep_checkpoints: bool = False

    def validate(self, prefix="train"):
        _check(0 < self.steps <= MAX_STEPS, f"{prefix}.steps", f"must be in [1, {MAX_STEPS}], got {self.steps}")
        _check(0 <= self.seed < 2**32, f"{prefix}.seed", f"must be in [0, 2**32), got {self.seed}")
        _check(self.batch_size > 0, f"{prefix}.batch_size", f"must be positive, got {self.batch_size}")
        _check(self.learning_rate > 0, f"{prefix}.learning_rate", f"must be positive, got {self.learning_rate}")
        _check(0.0 <= self.warmup_fraction < 1.0, f"{prefix}.warmup_fraction", "must be in [0, 1)")
        _check(self.weight_decay >= 0, f"{prefix}.weight_decay", "must be non-negative")
        _check(0.0 < self.layer_lr_decay <= 1.0, f"{prefix}.layer_lr_decay",
               f"must be in (0, 1] (1: off), got {self.layer_lr_decay}")
        _check(self.strategy in STRATEGIES, f"{prefix}.strategy", f"must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _check(self.strategy != "tpu" or self.tpu_address, f"{prefix}.tpu_address", "is required when strategy is tpu")
        _check(self.mixed_precision in PRECISIONS, f"{prefix}.mixed_precision",
               f"must be one of {', '.join(PRECISIONS)}, got {self.mixed_precision!r}")
        _check(0 < self.checkpoint_every <= MAX_STEPS, f"{prefix}.checkpoint_every", f"must be in [1, {MAX_STEPS}]")
        _check(0 < self.steps_per_execution <= MAX_STEPS, f"{prefix}.steps_per_execution", f"must be in [1, {MAX_STEPS}]")
        _check(0 <= self.trim_padding <= MAX_SEQ_LENGTH, f"{prefix}.trim_padding",
               f"must be 0 (off) or a multiple in [1, {MAX_SEQ_LENGTH}], got {self.trim_padding}")
        _check(self.strategy != "tpu" or not self.trim_padding, f"{prefix}.trim_padding",
               "must be 0 when strategy is tpu (TPUs compile one fixed batch shape)")
        _check(self.eval_every >= 0, f"{prefix}.eval_every", f"must be 0 (off) or positive, got {self.eval_every}")
        _check(self.keep in ("last", "best"), f"{prefix}.keep", f"must be last or best, got {self.keep!r}")
        _check(self.keep == "last" or self.eval_every > 0, f"{prefix}.keep",
               "best needs train.eval_every > 0 (evaluations to choose from)")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How span logits become answers: one decoder for evaluation, the exported model and predict.

    A question gets "no answer" when its null score minus its best span score exceeds
    `null_score_diff_threshold`; `n_best_size` spans are kept per question (nbest.json), each at
    most `max_answer_length` tokens long.
    """

    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0

    def validate(self, prefix="decode"):
        _check(0 < self.n_best_size <= MAX_N_BEST, f"{prefix}.n_best_size",
               f"must be in [1, {MAX_N_BEST}], got {self.n_best_size}")
        _check(0 < self.max_answer_length <= MAX_SEQ_LENGTH, f"{prefix}.max_answer_length",
               f"must be in [1, {MAX_SEQ_LENGTH}] tokens, got {self.max_answer_length}")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The exported SavedModel.

    `null_threshold`: "decode" serves `decode.null_score_diff_threshold`; "best" serves the
    threshold that maximised the student's dev F1 (recorded in metrics.json).
    """

    enabled: bool = True
    # The model folder under base_dir; empty: road_<recipe name> (road_demo for the demo recipe).
    model_name: str = ""
    base_dir: str = "saved_models"
    null_threshold: str = "decode"
    # The served encoder's dtype. bfloat16 halves matmul time on CPUs with AVX512_BF16 or AMX and
    # is much slower on CPUs without them; float32 is exact.
    precision: str = "float32"
    # The windows of a request run through the encoder sorted by length, this many at a time,
    # each group cut to its longest window: less padding than one batch cut to the longest. 3 was
    # the fastest per question at 16 questions a call, with and without XLA (benchmarks/README.md).
    window_group_size: int = 3
    # Compile the encoder with XLA, one compilation per group size and length bucket. TF Serving
    # runs it only with --xla_cpu_compilation_enabled=true. Not faster than the default graph with
    # oneDNN (whose weights are graph constants) on the Xeon measured (benchmarks/README.md).
    jit_compile: bool = False
    # With jit_compile, windows are padded to a multiple of this many tokens (fewer compilations).
    length_bucket: int = 32
    # Without jit_compile, encoder matrices (embedding tables aside) of at most this many MiB are
    # constants of the exported graph: oneDNN then caches their kernel layout (MiniLM, one question:
    # bfloat16 13.1 instead of 22.2 ms) but a server holds them many times over (the MiniLM's 43 MiB
    # of float32 matrices: 2.0 GB resident against 0.3 GB as variables). 0: always variables.
    max_constant_mib: int = 64

    def model_folder(self):
        """`<base_dir>/<model_name>`, the folder of the model's versions; ConfigError when the name is
        empty (a run's resolved config names its model; the experiments' runs, which export nothing, do
        not), since versions would then land in the base folder itself."""
        if not self.model_name:
            raise ConfigError("export.model_name: empty, so the model has no folder under the base folder; name it "
                              "(python -m road_tf.export --model-name NAME, or --set export.model_name=NAME)")
        return pathlib.Path(self.base_dir) / self.model_name

    def validate(self, prefix="export"):
        name = self.model_name
        _check(not name or (not name.startswith(".") and not any(c in name for c in "/\\") and name.isprintable()
                            and name == name.strip() and len(name.encode("utf-8")) <= 200), f"{prefix}.model_name",
               f"must be a folder name (printable, at most 200 bytes, no '/' or '\\', not starting with '.', "
               f"no whitespace at either end), got {name!r}")
        _check(self.null_threshold in ("decode", "best"), f"{prefix}.null_threshold",
               f"must be decode or best, got {self.null_threshold!r}")
        _check(self.precision in SERVING_PRECISIONS, f"{prefix}.precision",
               f"must be one of {', '.join(SERVING_PRECISIONS)}, got {self.precision!r}")
        _check(0 < self.window_group_size <= MAX_WINDOW_GROUP, f"{prefix}.window_group_size",
               f"must be in [1, {MAX_WINDOW_GROUP}], got {self.window_group_size}")
        _check(0 < self.length_bucket <= MAX_SEQ_LENGTH, f"{prefix}.length_bucket",
               f"must be in [1, {MAX_SEQ_LENGTH}] tokens, got {self.length_bucket}")
        _check(0 <= self.max_constant_mib <= 1024, f"{prefix}.max_constant_mib",
               f"must be in [0, 1024] (a SavedModel graph must stay under 2 GiB), got {self.max_constant_mib}")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run. `task` is the task fine-tuned, evaluated and exported."""

    task: str = "squad2"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    distillation: DistillationConfig = DistillationConfig()
    multitask: MultitaskConfig = MultitaskConfig()
    train: TrainConfig = TrainConfig()
    decode: DecodeConfig = DecodeConfig()
    export: ExportConfig = ExportConfig()

    def __post_init__(self):
        _check(self.task in TASKS, "task", f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        self.model.validate()
        self.data.validate()
        _check(not self.data.unanswerable_share or TASKS[self.task].kind == SPAN, "data.unanswerable_share",
               f"makes unanswerable questions for a span task; task {self.task!r} is not one")
        self.distillation.validate()
        self.multitask.validate()
        for i, files in enumerate(self.multitask.task_files):
            _check(files.task != self.task, f"multitask.task_files[{i}].task",
                   f"{files.task!r} is the main task, which reads data.*; list only the other tasks")
        self.train.validate()
        _check(not self.multitask.steps or self.multitask_batch_size() % self.multitask.k == 0, "multitask.batch_size",
               f"{self.multitask_batch_text()} must split into multitask.k={self.multitask.k} equal passes")
        self.decode.validate()
        self.export.validate()
        self.check_steps_per_execution()

    def check_steps_per_execution(self):
        """ConfigError unless `train.steps_per_execution` divides every step count at which a stage
        stops, checkpoints or evaluates: Keras runs whole executions, so a stage of 2 steps at 100
        per execution trained 100 (at 2**31 - 1 it spun for hours, deaf to SIGTERM), and
        checkpoints and evaluations fell between executions."""
        per_execution = self.train.steps_per_execution
        counts = {"train.steps": self.train.steps, "train.checkpoint_every": self.train.checkpoint_every,
                  "train.eval_every": self.train.eval_every, "multitask.steps": self.multitask.steps,
                  **{f"distillation.teachers[{i}].train_steps": teacher.train_steps
                     for i, teacher in enumerate(self.distillation.teachers)}}
        for field, count in counts.items():
            _check(count % per_execution == 0, "train.steps_per_execution",
                   f"{per_execution} does not divide {field} ({count}): a stage runs whole executions, so it "
                   "would run past that step; pick a divisor")

    def multitask_batch_size(self):
        """B, the global batch of a multi-task step: `multitask.batch_size`, or `train.batch_size` when it is 0."""
        return self.multitask.batch_size or self.train.batch_size

    def multitask_batch_text(self):
        """B as errors give it: "16" when `multitask.batch_size` sets it, else "0 (so train.batch_size 16)"."""
        batch = self.multitask_batch_size()
        return f"{batch}" if self.multitask.batch_size else f"0 (so train.batch_size {batch})"


def _coerce(value, annotation, field):
    """Returns `value` converted to `annotation` (a field's type), or raises ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return None if value is None else _coerce(value, inner[0], field)
    if origin in (tuple, Tuple):
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{field}: expected a list, got {shown(value)}")
        return tuple(_coerce(v, item_type, f"{field}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{field}: expected a mapping, got {shown(value)}")
        return _build(annotation, value, field)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{field}: expected true or false, got {shown(value)}")
    if annotation is int:
        return _integer(value, field)
    if annotation is float:
        return _number(value, field)
    if annotation is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # str() of b'x' or a date is no name
            raise ConfigError(f"{field}: expected a string, got {shown(value)}")
        text = str(value)
        problem = utf8_problem(text)
        if problem:
            raise ConfigError(f"{field}: {problem}, got {shown(text)}")
        if "\x00" in text:
            raise ConfigError(f"{field}: holds a NUL character, got {shown(text)}")
        return text
    raise ConfigError(f"{field}: unsupported type {annotation}")


def _integer(value, field):
    """`value` (an int, or DECIMAL_INTEGER text between blanks) as an int of at most 64 bits, or
    ConfigError naming `field`."""
    number = value
    if isinstance(value, str):
        try:
            number = decimal_integer(value.strip())
        except OverflowError:
            raise ConfigError(f"{field}: {shown(value)} is out of range (more than 64 bits)") from None
    if isinstance(number, bool) or not isinstance(number, int):
        raise ConfigError(f"{field}: expected an integer, got {shown(value)}")
    if not -2**63 <= number < 2**63:
        raise ConfigError(f"{field}: {number} is out of range (more than 64 bits)")
    return number


FLOAT32_NORMAL = (1.1754943508222875e-38, 3.4028234663852886e38)
"""float32's smallest and largest normal magnitudes, the range of every float setting: training
computes in float32, where a value beyond them is an infinity (a weight_decay of 1e308 made every
weight infinite at the first step, which the run blamed on the learning rate) or a 0 (a positive
learning rate of 1e-320). The few settings used in float64 (sampling temperatures, teacher weights,
the no-answer threshold) keep the same range, one rule for all: none needs more."""


def _number(value, field):
    """`value` (an int or float, or DECIMAL_NUMBER text between blanks) as a finite float float32 can
    hold (0, or a magnitude within FLOAT32_NORMAL), or ConfigError naming `field`. Python's float()
    would also take "1_0" (10), "٣" (3) or b"3", which an integer field refuses."""
    text = isinstance(value, str) and DECIMAL_NUMBER.fullmatch(value.strip())
    if not text and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{field}: expected a number, got {shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{field}: must be a finite number, got {shown(value)}")
    low, high = FLOAT32_NORMAL
    if number and not low <= abs(number) <= high:
        raise ConfigError(f"{field}: {shown(value)} is out of float32's range, which every float setting "
                          f"keeps to (0, or a magnitude in [{low:.2g}, {high:.2g}])")
    return number


def _build(cls, values, prefix=""):
    """Builds dataclass `cls` from a (possibly partial) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        field = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{field}: unknown key; known keys here: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], field)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{prefix or 'config'}: {error}") from None


def to_dict(config):
    """Returns a plain (YAML-ready) dict of a config, tuples as lists."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def changed_fields(before, after):
    """The dotted names (`train.steps`, `task`) of the fields whose values differ between two Configs."""
    old, new = to_dict(before), to_dict(after)
    changed = []
    for name, value in new.items():
        if isinstance(value, dict):
            changed += [f"{name}.{field}" for field in value if value[field] != old[name][field]]
        elif value != old[name]:
            changed.append(name)
    return changed


def merge_overrides(base, overrides, prefix=""):
    """`base` (a dict of overrides) updated by `overrides`, nested mappings merged key by key; a later
    value replaces an earlier one.

    Raises:
        ConfigError: `overrides` sets fields under a key to which `base` gives a value that is not a
            mapping or null (e.g. `--set data=5 --set data.skip_bad_records=true`): merged, one of
            the two settings would be dropped without a word.
    """
    merged = dict(base)
    for key, value in overrides.items():
        earlier = merged.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            merged[key] = merge_overrides(earlier, value, f"{prefix}{key}.")
        elif isinstance(value, dict) and earlier is not None:
            raise ConfigError(f"{prefix}{key}: set to {shown(earlier)} and, by a later setting, fields under it "
                              f"{shown(sorted(map(str, value)))}: set it one way")
        else:
            merged[key] = value
    return merged


def _flow_depth(text):
    """How deeply `[`/`{` brackets nest in YAML `text` (quotes ignored: an over-estimate). PyYAML's
    scanner takes time quadratic in that depth, so deep values are refused before parsing."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


UNKNOWN_TAG = "could not determine a constructor for the tag"
"""How PyYAML's ConstructorError begins for a tag it does not know (a local one, e.g. '!x')."""


def parse_set(pair):
    """Turns 'a.b=c' into {'a': {'b': c}}, the value parsed as YAML with `RecipeLoader` (a list or
    mapping in flow style, '[1, 2]', becomes one; a scalar stays text, which the field converts)."""
    if "=" not in pair:
        raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.steps=100")
    key, raw = pair.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {pair!r}: bad key {key!r}")
    if _flow_depth(raw) > MAX_YAML_DEPTH:
        raise ConfigError(f"--set {key}: the value nests brackets more than {MAX_YAML_DEPTH} deep")
    try:
        value = yaml.load(raw, Loader=RecipeLoader) if raw.strip() else ""
    except yaml.constructor.ConstructorError as error:
        if not str(error.problem).startswith(UNKNOWN_TAG):  # a repeated key, a YAML tag that cannot hold the value
            raise ConfigError(f"--set {key}: not valid YAML ({first_line(error)})") from None
        value = raw  # a tag YAML does not define ('!data.json'): text, as before tags were read
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def read_yaml(path):
    """Reads a recipe YAML file (a mapping of overrides; an empty file or one of comments is none)."""
    path = pathlib.Path(path)
    raw = read_config_bytes(path, "config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not valid UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}") from None
    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise ConfigError(f"{path}: not valid YAML (brackets nest more than {MAX_YAML_DEPTH} deep)")
    try:
        data = yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({first_line(error)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of overrides at the top level")
    return data


def load_config(config_path: Optional[str] = None, overrides=()):
    """Builds the run config: defaults <- recipe YAML overrides <- `--set` pairs."""
    values = {}
    if config_path:
        values = merge_overrides(values, read_yaml(config_path))
    for pair in overrides:
        values = merge_overrides(values, parse_set(pair))
    config = config_from_dict(values)
    _check_pretrained_sizes(config.model, values.get("model"), "model")
    given_teachers = (values.get("distillation") or {}).get("teachers") or ()
    for i, (teacher, given) in enumerate(zip(config.distillation.teachers, given_teachers)):
        _check_pretrained_sizes(teacher.model, given.get("model") if isinstance(given, dict) else None,
                                f"distillation.teachers[{i}].model")
    return config


def _check_pretrained_sizes(model, given, prefix):
    """ConfigError for an encoder size (MODEL_SIZE_FIELDS) that the overrides `given` (the user's model
    section, a dict or None) set beside the pretrained encoder of the built `model` (a ModelConfig),
    which has its own sizes. A section that lists every field is a resolved config's record (a run's
    config.yaml, the TFX Trainer's configuration), not a user's choice, and is not checked."""
    record = isinstance(given, dict) and set(given) >= {field.name for field in dataclasses.fields(ModelConfig)}
    if model.pretrained == "none" or not isinstance(given, dict) or record:
        return
    for name in MODEL_SIZE_FIELDS:
        hint = (f"keep some of its layers with {prefix}.pretrained_layers"
                if name == "num_layers" and model.pretrained != "preset" else "remove it")
        _check(name not in given, f"{prefix}.{name}", f"is set, but the encoder of {prefix}.pretrained "
               f"({model.pretrained!r}) has its own sizes, so it would be ignored; {hint}")


def _settings_besides(section, *kept):
    """The field names of Config's `section` other than `kept`."""
    return tuple(field.name for field in dataclasses.fields(type(getattr(Config, section))) if field.name not in kept)


# Settings that take effect only once a switch is on: (section, switch, what to set it to, settings).
# Given while the switch is left at its default, they would be ignored without a word. The hard
# loss applies without teachers, and compare_without_kd may be set off for a run without them.
SWITCHES = (
    ("data", "source", "json", ("train_path", "dev_path")),
    ("data", "source", "tfds", ("tfds_name",)),
    ("model", "pretrained", "preset", ("preset",)),
    ("multitask", "steps", "a number of steps", _settings_besides("multitask", "steps")),
    ("distillation", "teachers", "a list of teachers, e.g. configs/kd_logits.yaml",
     _settings_besides("distillation", "teachers", "hard_loss", "compare_without_kd")),
)


def _check_switches(values):
    """Raises ConfigError for a setting in the overrides `values` whose switch (SWITCHES) they leave
    at its default. A switch set off on purpose (source: synthetic, steps: 0, teachers: []) is not
    an error: it turns off what a recipe turned on."""
    for section, switch, value, settings in SWITCHES:
        given = values.get(section)
        if not isinstance(given, dict) or switch in given:
            continue
        default = getattr(getattr(Config, section), switch)
        for name in settings:
            _check(name not in given, f"{section}.{name}",
                   f"is set, but {section}.{switch} is not and its default ({default!r}) ignores it: "
                   f"set {section}.{switch} to {value}")


def config_from_dict(values):
    """The run config of a (possibly partial) nested dict of overrides of the defaults.

    Raises:
        ConfigError: an unknown key, a bad value, or a setting its switch leaves ignored (SWITCHES).
    """
    config = _build(Config, values)
    _check_switches(values)
    return config


def run_weights(run_dir):
    """The weights file of a finished run's student (the model it exported)."""
    return str(pathlib.Path(run_dir) / STUDENT_STAGE / STAGE_WEIGHTS)


def run_encoder_weights(run_dir):
    """The encoder weights (`ENCODER_WEIGHTS`) of a finished run's student, which `model.pretrained` reads."""
    return str(pathlib.Path(run_dir) / STUDENT_STAGE / ENCODER_WEIGHTS)


def is_run_directory(path):
    """Whether `path` is a road_tf run directory (it holds the `config.yaml` a run writes first)."""
    try:
        return (pathlib.Path(path) / RUN_CONFIG_FILE).is_file()
    except OSError:
        return False


def load_run_config(run, field):
    """The Config of the finished run directory `run`, which configuration `field` names.

    Raises:
        ConfigError: `run` has no `config.yaml` or has not finished (no `metrics.json`).
    """
    run = pathlib.Path(run)
    if not is_run_directory(run):
        raise ConfigError(f"{field}: {run} is not a road_tf run directory (no config.yaml){train_first(run)}")
    if not (run / RUN_METRICS_FILE).is_file():
        raise ConfigError(f"{field}: the run {run} has not finished (no metrics.json); finish it first")
    try:
        return config_of_run(run)
    except ConfigError as error:
        raise ConfigError(f"{field}: {error}") from None


def train_first(run):
    """"; train it first: python -m road_tf.train --config NAME --output-dir RUN" when nothing stands
    at the run folder `run`, which is `runs/NAME` for a recipe NAME (how the chained recipes name the
    run of their first stage); "" otherwise."""
    run = pathlib.Path(run)
    if (run.parent.name != "runs" or entry_kind(run) is not None
            or entry_kind(CONFIG_DIR / f"{run.name}.yaml") != "a file"):
        return ""
    return f"; train it first: python -m road_tf.train --config {run.name} --output-dir {shlex.quote(str(run))}"


def check_pretrained_folders(config):
    """Fails unless the `pretrained` of the model and of each teacher's model, when it is a path, is a
    folder (a checkpoint folder or a run directory; what it holds is checked when the model is built),
    naming the setting (the encoder's loader named only the path) and, for a missing chained run, the
    command that trains it (`train_first`)."""
    for field, model in model_sections(config).items():
        if model.pretrained not in PRETRAINED_KEYWORDS:
            require_folder(model.pretrained, f"{field}.pretrained {model.pretrained}",
                           "checkpoint folder or run directory", train_first(model.pretrained))


def config_of_run(run):
    """The Config in the run directory `run`'s config.yaml (the whole resolved config a run writes).

    Raises:
        ConfigError: the file is not a valid recipe, or is empty (it would read as all defaults).
    """
    path = pathlib.Path(run) / RUN_CONFIG_FILE
    values = read_yaml(path)
    if not values:
        raise ConfigError(f"{path}: empty; not the config.yaml a road_tf run writes")
    try:
        return config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def model_sections(config):
    """{setting: ModelConfig} of the run's model ("model") and each teacher's ("distillation.teachers[i].model")."""
    return {"model": config.model, **{f"distillation.teachers[{i}].model": teacher.model
                                      for i, teacher in enumerate(config.distillation.teachers)}}


def resolve_teacher_runs(config):
    """`config` with every teacher named by `run` made concrete: the run's model section and weights.

    Raises:
        ConfigError: the run directory has no `config.yaml`, has not finished (`metrics.json`), or
            was trained for another task; or the teacher gives a model section of its own beside `run`
            (one equal to TeacherConfig's default cannot be told from none and is replaced).
    """
    teachers = []
    for i, teacher in enumerate(config.distillation.teachers):
        if teacher.run:
            field, run = f"distillation.teachers[{i}].run", pathlib.Path(teacher.run)
            made = load_run_config(run, field)
            if made.task != config.task:
                raise ConfigError(f"{field}: the run {run} trained task {made.task!r}, this run trains {config.task!r}")
            if teacher.model not in (TeacherConfig.model, made.model):
                raise ConfigError(f"distillation.teachers[{i}].model: the run {run} gives the teacher's model; leave "
                                  "model out beside run")
            teacher = dataclasses.replace(teacher, model=made.model, checkpoint=run_weights(run))
        teachers.append(teacher)
    return dataclasses.replace(config, distillation=dataclasses.replace(config.distillation, teachers=tuple(teachers)))


def load_recipe(name_or_path, overrides=()):
    """(the recipe's file, None for no recipe; its Config): what a command's --config and --set give,
    the recipe resolved (`resolve_recipe`), loaded with the overrides (`load_config`) and its teachers
    named by run made concrete (`resolve_teacher_runs`)."""
    path = resolve_recipe(name_or_path)
    return path, resolve_teacher_runs(load_config(path, overrides))


def recipes():
    """Returns {name: first comment line} of the recipe files under configs/."""
    found = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[:1]
        found[path.stem] = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
    return found


def resolve_recipe(name_or_path):
    """The file of a recipe name ('demo') or a path to a YAML file (which `read_yaml` checks); None
    for None or "" (no --config: the defaults).

    Raises:
        ConfigError: neither a path with something at it nor a recipe's name (a name too long to be
            either is neither), or a path that cannot be looked at (a folder on it unreadable).
    """
    if not name_or_path:
        return None
    path = pathlib.Path(name_or_path)
    try:
        if path.suffix in (".yaml", ".yml") or entry_kind(path):
            return path
    except OSError as error:
        raise ConfigError(f"--config {name_or_path!r}: {error.strerror or error}") from None
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if entry_kind(candidate) is None:
        raise ConfigError(f"--config {name_or_path!r}: no such recipe; known: {', '.join(recipes())}")
    return candidate


def config_digest(config, length):
    """The first `length` hex digits of the sha256 of `dump_yaml(config)`: what names a run's folder."""
    return hashlib.sha256(dump_yaml(config).encode("utf-8")).hexdigest()[:length]


def dump_yaml(config):
    """A resolved config (or one of its sections) as YAML text (what `config.yaml` in a run
    directory holds), without the fields of `OMITTED_AT_DEFAULT` that hold their defaults (a
    section's own dump too: the experiment tables key teacher-logit caches on `data`'s)."""
    values = to_dict(config)
    for (section, field), default in OMITTED_AT_DEFAULT.items():
        if isinstance(config, Config):
            holder = values[section]
        else:  # a section: Config's class attribute of that name is the section's default
            holder = values if isinstance(config, type(getattr(Config, section))) else {}
        if field in holder and holder[field] == default:
            del holder[field]
    return yaml.safe_dump(values, sort_keys=False)
