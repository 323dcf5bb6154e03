"""Time per optimizer step of k-task gradient averaging, k in {1, 2, 4, 8}, at a constant global batch.

One small BERT (4 layers, hidden 256, BERT vocabulary) with four heads (one span, three
classification) is trained by `MultiTaskTrainer` with AdamW; every step sees the same global batch
(default 32 x 128 tokens) split into k passes of 32/k rows. Each k is warmed up (tracing), then
the k values are timed in interleaved rounds, so load from other processes hits them alike; a
k's time is the median over all its timed steps.

Run from the repo root: `.venv/bin/python benchmarks/multitask_step.py`. The last line printed is
one JSON object; "value" is the worst ratio of a k > 1 step time to the k = 1 step time.
"""

import time

import common
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from road_tf import training  # noqa: E402
from road_tf.data.features import END, LABEL, START  # noqa: E402
from road_tf.errors import ArgumentParser, RoadError, cli_main, whole_number  # noqa: E402
from road_tf.models.task_model import build_task_model  # noqa: E402
from road_tf.multitask.samplers import TaskSampler  # noqa: E402
from road_tf.multitask.trainer import MultiTaskTrainer, step_dataset  # noqa: E402
from road_tf.registry import SPAN  # noqa: E402
from road_tf.tasks import get_task  # noqa: E402

KS = (1, 2, 4, 8)
TASKS = [get_task(name) for name in ("squad2", "synthetic_nli", "synthetic_para", "synthetic_sentiment")]
HEADS = {task.name: "span" if task.kind == SPAN else task.num_classes for task in TASKS}
VOCAB = 30522
# Upper bounds of the model and batch flags (BERT-large's size, BERT's positions): beyond them the
# model or the random features would not fit in a CPU machine's memory.
MAX_BATCH, MAX_SEQ_LENGTH, MAX_LAYERS, MAX_HIDDEN = 1024, 512, 24, 1024
MIN_SEQ_LENGTH = 5
"""The shortest rows `random_features` makes: a question half and a context half that holds an answer."""


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of every training batch (one optimizer step each)."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.started = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def random_features(head, rows, seq_length, rng):
    """Features of one task: full-length rows, the second half context; labels of the task's kind."""
    features = {
        "token_ids": rng.integers(1000, VOCAB, (rows, seq_length)).astype(np.int32),
        "segment_ids": np.tile((np.arange(seq_length) >= seq_length // 2).astype(np.int32), (rows, 1)),
        "padding_mask": np.ones((rows, seq_length), np.int32),
    }
    if head == "span":
        features[START] = rng.integers(seq_length // 2, seq_length - 2, rows).astype(np.int32)
        features[END] = features[START] + 1
    else:
        features[LABEL] = rng.integers(0, head, rows).astype(np.int32)
    return features


def build_trainers(args):
    """{k: compiled MultiTaskTrainer}, each around its own copy of one initial model."""
    keras.utils.set_random_seed(0)
    trainers, initial = {}, None
    for k in KS:
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB, num_layers=args.layers, num_heads=args.hidden // 64, hidden_dim=args.hidden,
            intermediate_dim=4 * args.hidden, dropout=0.1, max_sequence_length=args.seq_length)
        model = build_task_model(backbone, TASKS)
        initial = initial or model.get_weights()
        model.set_weights(initial)
        trainer = MultiTaskTrainer(model, TASKS, k, args.batch_size)
        total = args.warmup + args.rounds * args.steps
        trainer.compile(optimizer=training.make_optimizer(1e-4, total, 0.1, 0.01), jit_compile=False)
        trainers[k] = trainer
    return trainers


@cli_main
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--batch-size", type=whole_number, default=32,
                        help=f"global batch B (rows per step; default 32, at most {MAX_BATCH})")
    parser.add_argument("--seq-length", type=whole_number, default=128,
                        help=f"default 128, from {MIN_SEQ_LENGTH} to {MAX_SEQ_LENGTH}")
    parser.add_argument("--layers", type=whole_number, default=4, help=f"default 4, at most {MAX_LAYERS}")
    parser.add_argument("--hidden", type=whole_number, default=256,
                        help=f"hidden size (heads = hidden / 64; default 256, at most {MAX_HIDDEN})")
    parser.add_argument("--warmup", type=whole_number, default=3,
                        help=f"untimed steps per k (tracing; default 3, at most {common.MAX_REPEATS})")
    parser.add_argument("--rounds", type=whole_number, default=8,
                        help=f"interleaved timing rounds (default 8, at most {common.MAX_REPEATS})")
    parser.add_argument("--steps", type=whole_number, default=2,
                        help=f"timed steps per k per round (default 2, at most {common.MAX_REPEATS})")
    args = common.parse_flags(parser, argv, bounds={
        "batch_size": (1, MAX_BATCH), "seq_length": (MIN_SEQ_LENGTH, MAX_SEQ_LENGTH), "layers": (1, MAX_LAYERS),
        "hidden": (1, MAX_HIDDEN), "warmup": (1, common.MAX_REPEATS), "rounds": (1, common.MAX_REPEATS),
        "steps": (1, common.MAX_REPEATS)})
    if args.batch_size % max(KS):
        raise RoadError(f"--batch-size must be a multiple of {max(KS)} (k up to {max(KS)}), got {args.batch_size}")
    if args.hidden % 64:
        raise RoadError(f"--hidden must be a multiple of 64 (heads of 64), got {args.hidden}")

    rng = np.random.default_rng(0)
    features = {name: random_features(head, 4 * args.batch_size, args.seq_length, rng) for name, head in HEADS.items()}
    sizes = {name: len(f["token_ids"]) for name, f in features.items()}
    trainers = build_trainers(args)
    timers = {k: StepTimer() for k in KS}
    position = {k: 0 for k in KS}

    def run(k, steps, timed):
        sampler = TaskSampler("uniform", sizes, k, replacement=True, seed=k)
        data = step_dataset(features, sampler, args.batch_size, 0, position[k], position[k] + steps)
        callbacks = [timers[k]] if timed else []
        trainers[k].fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks)
        position[k] += steps

    warmup = {}
    for k in KS:
        started = time.perf_counter()
        run(k, args.warmup, timed=False)
        warmup[k] = time.perf_counter() - started
    for _ in range(args.rounds):
        for k in KS:
            run(k, args.steps, timed=True)

    per_k = {str(k): float(np.median(timers[k].seconds)) for k in KS}
    ratios = {k: per_k[str(k)] / per_k["1"] for k in KS}
    print(f"global batch {args.batch_size} x {args.seq_length} tokens, BERT {args.layers}x{args.hidden}, "
          f"{args.rounds * args.steps} timed steps per k")
    for k in KS:
        print(f"k={k}: {per_k[str(k)]:.3f} s/step (median), ratio to k=1 {ratios[k]:.3f}, "
              f"passes of {args.batch_size // k} rows; warm-up incl. tracing {warmup[k]:.1f} s")
    common.result_line("multitask_step", max(ratios[k] for k in KS[1:]), 1.10, "lower", "ratio to k=1", per_k=per_k)


if __name__ == "__main__":
    main()
