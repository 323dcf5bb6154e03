"""Cost of knowledge distillation per train step, relative to plain fine-tuning of the same student.

    .venv/bin/python benchmarks/kd_step.py [--rounds 30]

Student: random BERT, 2 layers, hidden 128; teacher: 4 layers, hidden 256 (MiniLM vocabulary,
30,522 pieces); batch 16 x 128 tokens, span task, AdamW as `road_tf.training.make_optimizer`.
Four compiled functions are timed in alternation after warm-up, one call each per round:
  plain    Distiller without teachers (hard-label fine-tuning)
  offline  Distiller with num_offline_teachers=1, teacher logits in the batch
  online   Distiller with the teacher model (logits KD, no hidden-state KD)
  teacher  the teacher's forward pass alone (training=False)
Ratios of medians: offline / plain (goal <= 1.05) and online / (plain + teacher) (goal <= 1.05);
value = the worse (larger) of the two.
"""


import common

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from road_tf.config import DistillationConfig, ModelConfig, TeacherConfig  # noqa: E402
from road_tf.data.features import MODEL_INPUTS  # noqa: E402
from road_tf.distillation.distiller import Distiller  # noqa: E402
from road_tf.distillation.offline import offline_teacher_key  # noqa: E402
from road_tf.errors import ArgumentParser, cli_main, whole_number  # noqa: E402
from road_tf.models.backbones import build_backbone  # noqa: E402
from road_tf.models.task_model import build_task_model  # noqa: E402
from road_tf.tasks import get_task  # noqa: E402
from road_tf.training import make_optimizer  # noqa: E402

VOCAB, BATCH, SEQ = 30522, 16, 128
TASK = get_task("squad2")
MIN_ROUNDS = 20
"""The fewest timed calls of each function: fewer make the median ratio too noisy for the 1.05 goal."""
STUDENT = ModelConfig(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512, dropout=0.1)
TEACHER = ModelConfig(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024, dropout=0.1)


def span_model(model_config, name, seed):
    """A random-init one-head span model (keras.Model, inputs int32 [B, SEQ])."""
    keras.utils.set_random_seed(seed)
    return build_task_model(build_backbone(model_config, VOCAB, SEQ), [TASK], name=name)


def span_batch(seed=0):
    """One batch like `featurize_qa` output: question then context, some padding, answers or [CLS].

    Returns:
        dict of int32 tensors: token_ids/segment_ids/padding_mask [BATCH, SEQ], start/end [BATCH].
    """
    rng = np.random.default_rng(seed)
    positions = np.arange(SEQ)[None, :]
    lengths = rng.integers(SEQ // 2, SEQ + 1, size=BATCH)[:, None]
    padding = (positions < lengths).astype(np.int32)
    segments = ((positions > 16) & (padding == 1)).astype(np.int32)
    starts = rng.integers(20, SEQ // 2 - 8, size=BATCH)
    starts[: BATCH // 3] = 0
    ends = np.where(starts > 0, starts + rng.integers(0, 6, size=BATCH), 0)
    batch = {
        "token_ids": rng.integers(1000, VOCAB, size=(BATCH, SEQ)) * padding,
        "segment_ids": segments,
        "padding_mask": padding,
        "start_positions": starts,
        "end_positions": ends,
    }
    return {key: tf.constant(value, dtype=tf.int32) for key, value in batch.items()}


def compiled_step(distiller):
    """Compiles `distiller` with AdamW and returns its train step as a tf.function of a batch dict."""
    distiller.compile(optimizer=make_optimizer(5e-5, 10_000, 0.1, 0.01))
    distiller.optimizer.build(distiller.trained_variables())
    return tf.function(distiller.train_step)


def step_functions(batch):
    """The four timed callables (see the module docstring), each blocking until its result is ready."""
    teacher = span_model(TEACHER, "teacher", seed=1)
    teacher.trainable = False
    teacher_forward = tf.function(lambda inputs: teacher(inputs, training=False))
    inputs = {key: batch[key] for key in MODEL_INPUTS}
    outputs = teacher_forward(inputs)
    offline_batch = dict(batch)
    for head, key in enumerate(TASK.logit_keys):
        offline_batch[offline_teacher_key(0, head)] = outputs[key]
    kd = DistillationConfig(teachers=(TeacherConfig(model=TEACHER),), kd_weight=0.5, temperature=2.0)
    plain = compiled_step(Distiller(span_model(STUDENT, "plain", 0), TASK))
    offline = compiled_step(Distiller(span_model(STUDENT, "offline", 0), TASK, kd, num_offline_teachers=1))
    online = compiled_step(Distiller(span_model(STUDENT, "online", 0), TASK, kd, teachers=[teacher]))
    logits_key = TASK.logit_keys[0]
    return {
        "plain": lambda: float(plain(batch)["loss"]),
        "offline": lambda: float(offline(offline_batch)["loss"]),
        "online": lambda: float(online(batch)["loss"]),
        "teacher": lambda: float(tf.reduce_sum(teacher_forward(inputs)[logits_key])),
    }


@cli_main
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--rounds", type=whole_number, default=30,
                        help=f"timed calls of each function (default 30, {MIN_ROUNDS} to {common.MAX_REPEATS})")
    parser.add_argument("--warmup", type=whole_number, default=3,
                        help=f"untimed calls of each function first (default 3, 1 to {common.MAX_REPEATS})")
    args = common.parse_flags(parser, argv, bounds={"rounds": (MIN_ROUNDS, common.MAX_REPEATS),
                                                    "warmup": (1, common.MAX_REPEATS)})

    functions = step_functions(span_batch())
    times = common.interleaved_times(functions, rounds=args.rounds, warmup=args.warmup)
    seconds = {name: common.median(values) for name, values in times.items()}
    offline_ratio = seconds["offline"] / seconds["plain"]
    online_ratio = seconds["online"] / (seconds["plain"] + seconds["teacher"])
    print("median seconds: " + ", ".join(f"{name} {value:.4f}" for name, value in seconds.items()))
    common.result_line(
        "kd_step", max(offline_ratio, online_ratio), 1.05, "lower", "ratio of step times (worse of two)",
        offline_vs_plain=round(offline_ratio, 4), online_vs_plain_plus_teacher_forward=round(online_ratio, 4),
        **{f"{name}_seconds": round(value, 5) for name, value in seconds.items()},
        batch=BATCH, seq=SEQ, rounds=args.rounds,
    )


if __name__ == "__main__":
    main()
