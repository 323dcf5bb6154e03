"""train.strategy=multi_worker for real: two worker processes on this machine, TF_CONFIG with two
localhost ports; and the one-line failures of multi_worker without a cluster and of an unreachable TPU."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from helpers_serving import free_port
from road_tf import cluster, training
from road_tf.config import TrainConfig
from road_tf.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
# A KD stage (one teacher trained here) after a multi-task stage (k=2 tasks a step), on batches
# cut to their longest row (train.trim_padding), keeping the best of its dev evaluations, tiny and
# without dropout: per-replica dropout masks differ from one process's, nothing else may.
RECIPE = [
    "train.steps=60", "train.batch_size=8", "train.checkpoint_every=10", "train.learning_rate=0.003",
    "train.trim_padding=16", "train.eval_every=30", "train.keep=best",
    "data.synthetic_train_size=60", "data.synthetic_dev_size=20",
    "data.max_seq_length=64", "data.doc_stride=24", "data.max_query_length=16",
    "model.hidden_dim=16", "model.intermediate_dim=32", "model.num_layers=1", "model.dropout=0.0",
    "multitask.steps=6", "multitask.k=2",
    "distillation.teachers=[{model: {num_layers: 1, hidden_dim: 16, num_heads: 2, intermediate_dim: 32, "
    "dropout: 0.0}, train_steps: 4}]",
    "distillation.compare_without_kd=false",
]
# Runs road_tf.train, then copies the student weights this worker holds (the chief's are in the
# run folder, another worker's in its private scratch folder) to argv[1]. Worker 1's own dev scores
# rank its evaluations the other way round from the chief's (ties too), as if its CPU rounded them
# differently: it must keep the weights the chief's scores pick all the same.
WORKER = """
import json, os, shutil, sys
from road_tf import cluster, train, training
from road_tf.config import load_config
if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
    chief_init = training.PeriodicEvaluation.__init__
    def reversed_scores(self, kept, evaluate, metric, *rest):
        calls = []
        def evaluation():
            calls.append(1)
            metrics = dict(evaluate())
            metrics[metric] = 1e-6 * len(calls) - metrics[metric]
            return metrics
        chief_init(self, kept, evaluation, metric, *rest)
    training.PeriodicEvaluation.__init__ = reversed_scores
args = sys.argv[2:]
code = train.main(args)
overrides = [args[i + 1] for i, flag in enumerate(args) if flag == "--set"]
config = load_config(None, overrides)
output_dir = args[args.index("--output-dir") + 1]
shutil.copy(cluster.worker_path(output_dir + "/student/model.weights.h5", config.train), sys.argv[1])
sys.exit(code)
"""
# The student's parameters whose gradient is zero in exact arithmetic (see assert_same_weights).
ZERO_GRADIENT = ("span_head/dense/vars/1", "transformer_encoder/_feedforward_layer_norm/vars/1")
# A line of TensorFlow's C++ logging: severity, date, time, thread, file:line].
TF_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
# Seconds the surviving worker may take to notice that its peer died.
PEER_LOSS_LIMIT = 180


def free_ports(count):
    """`count` distinct free TCP ports on localhost (`free_port`, which avoids the ephemeral range)."""
    ports = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def cli_args(output_dir, overrides):
    args = ["--output-dir", str(output_dir)]
    for pair in overrides:
        args += ["--set", pair]
    return args


def environment(tf_config=None):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", ROAD_TF_QUIET="1", PYTHONWARNINGS="ignore")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def start_workers(tmp_path, run_dir, overrides, attempt):
    """Starts worker 0 (the chief) and worker 1; returns their Popen objects (logs in tmp_path)."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        log = tmp_path / f"worker{index}-{attempt}"
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"worker{index}.weights.h5"),
             *cli_args(run_dir, overrides + ["train.strategy=multi_worker"])],
            cwd=REPO, env=environment(tf_config), stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w")))
    return processes


def wait_for(path, processes, limit):
    """Waits until `path` exists; fails if a process ends first or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert all(p.poll() is None for p in processes), f"a worker ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit} s"
        time.sleep(0.2)


def read_weights(path):
    """{dataset path: array} of every array in a Keras .weights.h5 file."""
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
    return arrays


def assert_same_weights(a, b, rtol, atol, noise=()):
    """Every array of two weight files is close; arrays named in `noise` only within 1e-3.

    `noise` holds parameters whose gradient is zero in exact arithmetic, e.g. the span head's bias
    and the LayerNorm offset before it (a constant added to every position's logit does not
    change a softmax over positions). Their gradients are pure rounding noise, which Adam scales
    up to steps of about the learning rate, so their values differ with the order of float sums.
    """
    first, second = read_weights(a), read_weights(b)
    assert sorted(first) == sorted(second) and first
    for name in first:
        loose = any(name.endswith(suffix) for suffix in noise)
        np.testing.assert_allclose(first[name], second[name], err_msg=name, rtol=0 if loose else rtol,
                                   atol=1e-3 if loose else atol)


@pytest.mark.slow
def test_two_workers_train_like_one_process_survive_a_lost_peer_and_resume(tmp_path):
    overrides = RECIPE + [f"data.cache_dir={tmp_path / 'cache'}", f"export.base_dir={tmp_path / 'models'}"]
    # The reference: one process, the same global batch.
    single = subprocess.run([sys.executable, "-m", "road_tf.train", *cli_args(tmp_path / "single", overrides)],
                            cwd=REPO, env=environment(), capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-2000:]

    run_dir = tmp_path / "distributed"
    chief, worker = start_workers(tmp_path, run_dir, overrides, attempt=1)
    try:
        wait_for(run_dir / "student" / "checkpoints" / "ckpt-10.index", [chief, worker], limit=900)
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        chief.wait(timeout=PEER_LOSS_LIMIT)
    finally:
        for process in (chief, worker):
            if process.poll() is None:
                process.kill()
                process.wait()
    print(f"the chief stopped {time.monotonic() - killed_at:.1f} s after its peer was killed")
    # The error is one line, the last but for TensorFlow's own C++ logging, which its threads write
    # before it and, as the process ends, after it (e.g. the coordination agent's heartbeat timeout).
    stderr = (tmp_path / "worker0-1.err").read_text()
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert chief.returncode == 2 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    after = lines[lines.index(errors[0]) + 1:] if len(errors) == 1 else []
    assert len(errors) == 1 and (not after or TF_LOG_LINE.match(after[0])), after[:3]
    assert "peer worker stopped answering" in errors[0] and "restart every worker" in errors[0]
    assert not (run_dir / "metrics.json").exists()

    # Rerunning both workers resumes the student stage from the chief's last checkpoint.
    processes = start_workers(tmp_path, run_dir, overrides, attempt=2)
    for process in processes:
        process.wait(timeout=900)
    assert [p.returncode for p in processes] == [0, 0], (tmp_path / "worker0-2.err").read_text()[-2000:]
    log = (tmp_path / "worker0-2.out").read_text()
    assert "resumed student from" in log and "ckpt-" in log

    # Both workers hold the same weights, equal to the one-process run's.
    assert_same_weights(tmp_path / "worker0.weights.h5", tmp_path / "worker1.weights.h5", rtol=0, atol=0)
    assert_same_weights(run_dir / "student" / "model.weights.h5", tmp_path / "single" / "student" / "model.weights.h5",
                        rtol=1e-4, atol=1e-6, noise=ZERO_GRADIENT)
    assert_same_weights(run_dir / "multitask" / "encoder.weights.h5",
                        tmp_path / "single" / "multitask" / "encoder.weights.h5", rtol=1e-4, atol=1e-6)
    # Only the chief wrote into the run: one more export (the single run made version 1), one
    # training event file per stage and try (the finished multi-task and teacher stages were not
    # rerun), and the evaluations of one process.
    assert sorted(p.name for p in (tmp_path / "models").glob("*/*")) == ["1", "2"]
    events = {stage: len(list((run_dir / stage / "logs" / "train").glob("events.out.tfevents.*")))
              for stage in ("multitask", "teacher_0", "student")}
    assert events == {"multitask": 1, "teacher_0": 1, "student": 2}
    evals = json.loads((run_dir / "student" / training.EVALS_FILE).read_text())
    assert [entry["step"] for entry in evals] == [30, 60]
    assert (run_dir / "train.log").read_text().count("stage student: 60 steps") == 2, "the chief's, one per try"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["f1"] == pytest.approx(json.loads((tmp_path / "single" / "metrics.json").read_text())
                                                   ["final"]["f1"], abs=1e-6)


def test_is_chief_and_worker_paths_follow_tf_config(monkeypatch, tmp_path):
    config = TrainConfig(strategy="multi_worker")
    workers = {"worker": ["localhost:1", "localhost:2"]}
    target = tmp_path / "run" / "metrics.json"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}}))
    assert cluster.is_chief(config) and cluster.worker_path(target, config) == target
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": workers, "task": {"type": "worker", "index": 1}}))
    private = cluster.worker_path(target, config)
    assert not cluster.is_chief(config) and tmp_path not in private.parents and private.parent.is_dir()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["localhost:3"], **workers},
                                                "task": {"type": "worker", "index": 0}}))
    assert not cluster.is_chief(config)
    assert cluster.is_chief(TrainConfig(strategy="mirrored"))


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG: not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', '"task" must name'),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', '"cluster" must list'),
    ("[" * 50_000 + "]" * 50_000, "TF_CONFIG: not JSON that Python reads"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": ["worker"], "index": 0}}', '"task" must name'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": true}}', '"task" must name'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": -1}}', '"task" must name'),
    ('{"cluster": {"worker": ["localhost:1"], "../../tmp/x": ["localhost:2"]}, "task": {"type": "../../tmp/x", '
     '"index": 0}}', '"task" must name the "chief" or a "worker"'),
    ('{"cluster": {"worker": [1, 2]}, "task": {"type": "worker", "index": 0}}', '"cluster" must list'),
    ('{"cluster": {"chief": [], "worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}',
     '"cluster" must list'),
], ids=["unset", "not-json", "index-past-job", "no-jobs", "too-deep", "type-list", "index-bool", "index-negative",
        "type-a-path", "address-numbers", "chief-empty"])
def test_a_bad_cluster_is_a_config_error(monkeypatch, tf_config, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=message):
        cluster.cluster_task()


def test_the_missing_cluster_error_names_a_readme_section_that_exists(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError) as raised:
        cluster.cluster_task()
    readme, section = raised.value.args[0].split("(see ", 1)[1].rstrip(")").split(", ", 1)
    assert f"\n## {section}\n" in (REPO / readme).read_text(encoding="utf-8")


def one_line_failure(args, code_before=""):
    """Runs road_tf.train in a fresh process without TF_CONFIG; returns (exit code, stderr lines, seconds)."""
    program = f"import sys\nfrom road_tf import train, training\n{code_before}\ntrain.main(sys.argv[1:])"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", program, *args], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stderr.strip().splitlines(), time.monotonic() - started


def test_multi_worker_without_a_cluster_fails_with_one_line(tmp_path):
    code, lines, _ = one_line_failure(cli_args(tmp_path / "run", ["train.strategy=multi_worker"]))
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("error: train.strategy: multi_worker needs a cluster, but TF_CONFIG is not set")
    assert not (tmp_path / "run").exists()  # stopped before the run wrote anything


def test_unreachable_tpu_fails_within_the_timeout_with_one_line(tmp_path):
    closed = free_ports(1)[0]
    code, lines, seconds = one_line_failure(
        cli_args(tmp_path / "run", ["train.strategy=tpu", f"train.tpu_address=grpc://127.0.0.1:{closed}"]),
        code_before="training.TPU_CONNECT_TIMEOUT = 3")
    assert code == 2 and len(lines) == 1, lines[-5:]
    assert lines[0].startswith(f"error: train.tpu_address: cannot reach the TPU at 'grpc://127.0.0.1:{closed}'")
    print(f"failed after {seconds:.1f} s, including the TensorFlow import")


def test_a_worker_other_than_the_chief_records_its_evaluations_apart(monkeypatch, tmp_path):
    """Every worker evaluates and keeps the best weights (they must agree), but only the chief writes
    into the stage folder; another starts from copies of the chief's records (a resumed stage)."""
    config = TrainConfig(strategy="multi_worker", eval_every=2, keep="best")
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    stage = tmp_path / "run" / "student"
    stage.mkdir(parents=True)
    chief_evals = [{"step": 2, "value": 40.0, "metrics": {"f1": 40.0}}]
    (stage / training.EVALS_FILE).write_text(json.dumps(chief_evals))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.save_weights(str(stage / training.BEST_WEIGHTS))
    before = {name: (stage / name).read_bytes() for name in (training.EVALS_FILE, training.BEST_WEIGHTS)}

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    records = training.evaluation_dir(stage, config)
    assert tmp_path not in records.parents and training.read_evals(records) == chief_evals
    assert (records / training.BEST_WEIGHTS).read_bytes() == before[training.BEST_WEIGHTS]
    model.set_weights([weight + 1 for weight in model.get_weights()])  # trained on to a better step 4
    callback = training.PeriodicEvaluation(model, lambda: {"f1": 50.0}, "f1", 2, 4, records, "best")
    callback.set_model(model)
    callback._evaluate(4)
    assert training.best_eval(records)["step"] == 4
    assert (records / training.BEST_WEIGHTS).read_bytes() != before[training.BEST_WEIGHTS]
    assert {name: (stage / name).read_bytes() for name in before} == before and not (stage / "logs").exists()
    for name in before:  # the stage tried again in this process, from a chief without records
        (stage / name).unlink()
    assert not any((training.evaluation_dir(stage, config) / name).exists() for name in before)

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert training.evaluation_dir(stage, config) == stage.absolute()
