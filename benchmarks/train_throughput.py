"""Fine-tuning throughput of the MiniLM QA model at 384 tokens: road_tf's train step vs Hugging Face + PyTorch.

    .venv/bin/python benchmarks/train_throughput.py [--batch-size 8] [--rounds 5] [--steps 2] [--threads 2]
        [--jit-compile] [--steps-per-execution 1] [--precision float32|mixed_bfloat16]

road_tf: the model `python -m road_tf.train --set model.pretrained=minilm` fine-tunes (MiniLM-L6
encoder, exact GELU as its config.json says, span head seeded), trained by its real step: a
`Distiller` without teachers (plain hard-label loss) compiled as `road_tf.experiment.train_stage`
compiles it (AdamW from `training.make_optimizer`, lr 5e-5, 10% warm-up, weight decay 0.01,
`train.jit_compile` / `train.steps_per_execution` / `train.mixed_precision` from the flags) and
run by Keras `fit` on `training.train_dataset` batches. A Keras callback times each call of the
compiled train function; `training.fit`'s checkpoint and TensorBoard callbacks (every 100 steps
by default) are left out.

Baseline: `BertForQuestionAnswering` of transformers 4.57.6 on torch 2.13.0 (CPU, float32) from
the same MiniLM safetensors (QA head random), trained by benchmarks/hf_train_baseline.py in
.venv-baseline (made by benchmarks/setup_baseline.sh when missing) with the same batches,
optimizer settings and dropout, and TUNED_MALLOC (benchmarks/common.py).

Both sides: --batch-size windows of 384 tokens (a 64-token question segment, the rest context,
random token ids, random padding lengths: every step computes all 384 positions either way),
the same --threads cores (affinity) and intra-op threads. After warm-up (tracing; 2 steps each),
--rounds rounds each run --steps steps of road_tf, then of the baseline, then one fp32 matmul
peak probe (chained 2048 x 2048 `tf.matmul` in a tf.function, in this process), so that load
from other processes falls on all three alike. The probe uses the kernels road_tf trains with:
oneDNN's, which road_tf turns on (`TF_ENABLE_ONEDNN_OPTS`, reported in the JSON); with
TF_ENABLE_ONEDNN_OPTS=0 on an AVX2-only CPU both fall back to Eigen, whose matmul is ~1.5x slower.

Result: value = road_tf examples/s ÷ the baseline's, each side counted at its fastest step; goal
≥ 1.0. Other processes on a shared machine only slow a step down, and PyTorch's OpenMP threads
suffer more from them than TF's thread pool (benchmarks/README.md, serving), so the fastest step
estimates each side on a quiet machine; `median_value` is the same ratio from the median steps.
`peak_share` = road_tf's matmul FLOP/s at its fastest step ÷ the fastest fp32 matmul probe of the
run, where a step's FLOPs are 3 × the forward pass's matmul FLOPs (`train_flops_per_example`);
goal ≥ 0.5, reported in the JSON as `peak_share_goal` / `peak_share_met`.
"""

import os
import sys
import tempfile
import time

import common

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from multitask_step import StepTimer  # noqa: E402
from road_tf import training  # noqa: E402
from road_tf.config import load_config  # noqa: E402
from road_tf.data.tokenizer import load_tokenizer  # noqa: E402
from road_tf.distillation.distiller import Distiller  # noqa: E402
from road_tf.errors import ArgumentParser, RoadError, cli_main, whole_number  # noqa: E402
from road_tf.minilm import minilm_path  # noqa: E402
from road_tf.models.convert import read_config  # noqa: E402
from road_tf.models.task_model import build_model  # noqa: E402
from road_tf.tasks import get_task  # noqa: E402

SEQ, QUESTION, TASK = 384, 64, "squad2"
LEARNING_RATE = 5e-5
WARMUP_STEPS = 2
MAX_BATCH = 256
"""The largest --batch-size: 256 windows of 384 tokens already take tens of GB to train on, each side."""
MATMUL_SIZE, MATMUL_CHAIN = 2048, 4
BASELINE_SCRIPT = common.REPO / "benchmarks" / "hf_train_baseline.py"


def parse_args(argv):
    """Command-line flags -> argparse.Namespace; RoadError for values out of range."""
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--batch-size", type=whole_number, default=8,
                        help=f"windows per step, both sides (default 8, at most {MAX_BATCH})")
    parser.add_argument("--rounds", type=whole_number, default=5,
                        help=f"interleaved timing rounds (default 5, at most {common.MAX_REPEATS})")
    parser.add_argument("--steps", type=whole_number, default=2,
                        help=f"timed steps per side per round (default 2, at most {common.MAX_REPEATS})")
    parser.add_argument("--threads", type=whole_number, default=2,
                        help="CPU cores and threads for each side (default 2, at most the cores this process may use)")
    parser.add_argument("--jit-compile", action="store_true", help="road_tf: train.jit_compile=true (XLA)")
    parser.add_argument("--steps-per-execution", type=whole_number, default=1,
                        help="road_tf: train.steps_per_execution (default 1; --steps must be a multiple of it)")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                        help="road_tf: train.mixed_precision (the baseline stays float32)")
    args = common.parse_flags(parser, argv, bounds={
        "batch_size": (1, MAX_BATCH), "rounds": (1, common.MAX_REPEATS), "steps": (1, common.MAX_REPEATS),
        "threads": common.THREADS, "steps_per_execution": (1, common.MAX_REPEATS)})
    if args.steps % args.steps_per_execution:
        raise RoadError(f"--steps ({args.steps}) must be a multiple of --steps-per-execution "
                        f"({args.steps_per_execution})")
    return args


def random_features(rows, seed=0):
    """Training features like `featurize_qa`'s at 384 tokens.

    Returns:
        dict of int32 arrays: token_ids, segment_ids, padding_mask [rows, SEQ]; start_positions,
        end_positions [rows] (a third of the rows unanswerable, i.e. at [CLS]).
    """
    rng = np.random.default_rng(seed)
    positions = np.arange(SEQ)[None, :]
    padding = (positions < rng.integers(SEQ // 2, SEQ + 1, size=(rows, 1))).astype(np.int32)
    starts = rng.integers(QUESTION + 1, SEQ // 2 - 30, size=rows)
    starts[: rows // 3] = 0
    ends = np.where(starts > 0, starts + rng.integers(0, 10, size=rows), 0)
    return {
        "token_ids": (rng.integers(1000, 30522, size=(rows, SEQ)) * padding).astype(np.int32),
        "segment_ids": ((positions >= QUESTION) & (padding == 1)).astype(np.int32),
        "padding_mask": padding,
        "start_positions": starts.astype(np.int32),
        "end_positions": ends.astype(np.int32),
    }


def train_flops_per_example(config):
    """Matmul FLOPs of one training example: 3 x forward (backward = 2 x forward).

    Forward per layer: Q, K, V and output projections 4 x 2·S·H², attention scores and context
    2 x 2·S²·H, feed-forward 2 x 2·S·H·I; plus the span head 2·S·H·2. Element-wise work
    (GELU, LayerNorm, softmax), the embedding gradient and AdamW are not counted.

    Args:
        config: the MiniLM's config.json dict.
    """
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 8 * SEQ * hidden ** 2 + 4 * SEQ ** 2 * hidden + 4 * SEQ * hidden * inner
    return 3 * (layers * per_layer + 4 * SEQ * hidden)


def road_trainer(args, total_steps):
    """The compiled Distiller around a fresh MiniLM span model -> (distiller, train config)."""
    config = load_config(overrides=[
        "model.pretrained=minilm", f"data.max_seq_length={SEQ}", f"data.max_query_length={QUESTION}",
        "data.doc_stride=128", f"train.batch_size={args.batch_size}", f"train.learning_rate={LEARNING_RATE}",
        f"train.jit_compile={str(args.jit_compile).lower()}", f"train.steps_per_execution={args.steps_per_execution}",
        f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}", f"train.mixed_precision={args.precision}",
    ])
    training.set_precision(config.train)
    task = get_task(TASK)
    keras.utils.set_random_seed(0)
    vocabulary_size = load_tokenizer(config.data.vocab).vocabulary_size
    student = build_model(config.model, [task], vocabulary_size, config.data.max_seq_length, "student")
    distiller = Distiller(student, task, total_steps=total_steps)
    train = config.train
    distiller.compile(optimizer=training.make_optimizer(LEARNING_RATE, total_steps, train.warmup_fraction,
                                                        train.weight_decay),
                      jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution)
    distiller.optimizer.build(distiller.trained_variables())
    return distiller, train


def matmul_probe():
    """A zero-argument callable running MATMUL_CHAIN chained fp32 matmuls -> their FLOP count."""
    scale = 1.0 / np.sqrt(MATMUL_SIZE)
    a = tf.random.stateless_normal([MATMUL_SIZE, MATMUL_SIZE], seed=[0, 1])
    b = tf.random.stateless_normal([MATMUL_SIZE, MATMUL_SIZE], seed=[0, 2]) * scale

    @tf.function
    def chain():
        x = a
        for _ in range(MATMUL_CHAIN):
            x = tf.matmul(x, b)
        return tf.reduce_sum(x)

    def run():
        float(chain())
        return 2 * MATMUL_SIZE ** 3 * MATMUL_CHAIN

    return run


def measure(distiller, train_config, features, baseline, args):
    """Warm-up, then interleaved rounds -> (road_tf step seconds, baseline step seconds, matmul FLOP/s)."""
    timer, position = StepTimer(), [0]

    def road_steps(steps, callbacks):
        data = training.train_dataset(features, train_config.batch_size, train_config.seed, skip_batches=position[0])
        distiller.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks)
        position[0] += steps

    probe, hf_seconds, matmul_rates = matmul_probe(), [], []
    road_steps(WARMUP_STEPS * args.steps_per_execution, [])
    probe()

    def timed_probe():
        begin = time.perf_counter()
        flops = probe()
        matmul_rates.append(flops / (time.perf_counter() - begin))

    functions = {
        "road_tf": lambda: road_steps(args.steps, [timer]),
        "hf": lambda: hf_seconds.extend(baseline.request({"steps": args.steps})["seconds"]),
        "matmul": timed_probe,
    }
    common.interleaved_times(functions, rounds=args.rounds, warmup=0)
    road_seconds = [seconds / args.steps_per_execution for seconds in timer.seconds]
    return road_seconds, hf_seconds, matmul_rates


@cli_main
def main(argv=None):
    args = parse_args(argv)
    begin, load_before = time.perf_counter(), os.getloadavg()[0]
    common.ensure_baseline_venv()
    cores = common.cores_for(args.threads)
    os.sched_setaffinity(0, cores)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    total_steps = (WARMUP_STEPS + args.rounds * args.steps) * args.steps_per_execution + 10
    features = random_features(4 * args.batch_size)
    with tempfile.TemporaryDirectory(prefix="road_tf_train_bench_") as work:
        features_file = os.path.join(work, "features.npz")
        np.savez(features_file, **features)
        baseline = common.BaselineWorker(BASELINE_SCRIPT, [
            "--model-dir", str(minilm_path()), "--features", features_file, "--batch-size", str(args.batch_size),
            "--total-steps", str(total_steps), "--threads", str(args.threads), "--warmup", str(WARMUP_STEPS),
        ], args.threads, cores)
        try:
            distiller, train_config = road_trainer(args, total_steps)
            road_seconds, hf_seconds, matmul_rates = measure(distiller, train_config, features, baseline, args)
        finally:
            baseline.close()
    road_rate, hf_rate = args.batch_size / min(road_seconds), args.batch_size / min(hf_seconds)
    median_value = common.median(hf_seconds) / common.median(road_seconds)
    flops = train_flops_per_example(read_config(minilm_path()))
    peak = max(matmul_rates)
    peak_share = road_rate * flops / peak
    print(f"fastest step of {args.batch_size} x {SEQ}: road_tf {min(road_seconds):.3f} s ({road_rate:.2f} ex/s), "
          f"HF {min(hf_seconds):.3f} s ({hf_rate:.2f} ex/s); ratio of medians {median_value:.3f}; fp32 matmul peak "
          f"{peak / 1e9:.0f} GFLOP/s, road_tf {road_rate * flops / 1e9:.0f} GFLOP/s ({peak_share:.0%})", flush=True)
    common.result_line(
        "train_throughput", road_rate / hf_rate, 1.0, "higher", "ratio of training examples/s (road_tf / HF)",
        median_value=round(median_value, 4),
        road_tf_examples_per_s=round(road_rate, 3), hf_examples_per_s=round(hf_rate, 3),
        road_tf_step_seconds=[round(s, 3) for s in road_seconds], hf_step_seconds=[round(s, 3) for s in hf_seconds],
        peak_share=round(peak_share, 4), peak_share_goal=0.5, peak_share_met=peak_share >= 0.5,
        hf_peak_share=round(hf_rate * flops / peak, 4), peak_fp32_matmul_gflops=round(peak / 1e9, 1),
        matmul_gflops=[round(rate / 1e9, 1) for rate in matmul_rates],
        road_tf_gflops=round(road_rate * flops / 1e9, 1), train_gflop_per_example=round(flops / 1e9, 2),
        batch_size=args.batch_size, seq=SEQ, rounds=args.rounds, steps_per_round=args.steps,
        jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution, precision=args.precision,
        cpu_bfloat16=common.cpu_has_bfloat16(), tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        threads=args.threads, cores=cores,
        baseline={name: setting for name, setting in baseline.info.items() if name != "ready"},
        load_average_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        total_seconds=round(time.perf_counter() - begin, 1),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
