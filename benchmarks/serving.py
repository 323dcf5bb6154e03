"""QA serving throughput: road_tf's exported MiniLM QA model behind the dev server vs Hugging Face's pipeline.

    .venv/bin/python benchmarks/serving.py [--questions 192] [--chunk 32] [--passes 3] [--threads 2]
        [--batching-parameters serving/batching.config] [--precisions auto|both|fp32] [--jit-compile on|off]

road_tf: a MiniLM-L6 QA model (`--set model.pretrained=minilm`, untrained QA head; max_seq_length
384, doc_stride 128, max_query_length 64) is exported with `export_qa_model` once per precision,
`export.precision` float32 and bfloat16 (by default bfloat16 only on CPUs with bfloat16
instructions: emulated, it is ~5x slower than float32), as the default export does it (encoder
weights as graph constants, no XLA; `--jit-compile on` for the XLA encoder, `export.jit_compile`),
into a temporary `saved_models/`, served by `python -m serving.devserver --enable_batching
--xla_cpu_compilation_enabled` with serving/batching.config. Closed-loop clients
send one question per request over gRPC (`serving.client.GrpcPredictor`, one shared channel) and
over REST (`serving.client.RestPredictor`, kept-alive connections), with 1 and with 16 requests
in flight: modes `{bf16,fp32}_{grpc,rest}_c{1,16}`.

Baseline: Hugging Face `pipeline("question-answering")` on PyTorch CPU (float32) with the same
encoder (`BertForQuestionAnswering` from the package's MiniLM folder, QA head random, offline)
and the same settings (max_seq_len 384, doc_stride 128, max_question_len 64, max_answer_len 30,
impossible answers allowed), run by benchmarks/hf_qa_baseline.py in .venv-baseline (Python 3.11,
made by benchmarks/setup_baseline.sh when missing): one call per question (batch 1), and one
call over all questions with batch_size 16, its way of serving many questions at once.

Fairness: the dev server and the baseline get the same `--threads` CPU cores (affinity) and that
many intra-op threads (TF_NUM_INTRAOP_THREADS / torch.set_num_threads, OMP_NUM_THREADS); the
baseline runs with the tuned glibc malloc settings (common.TUNED_MALLOC). The load generator (this
process) shares the server's cores, so client overhead counts against road_tf.

Rounds: the questions are cut into chunks of --chunk; a round sends one chunk through every mode
(the mode order rotating from round to round) and --passes passes go over all chunks, so load
from other processes on a shared machine falls on every mode alike. Such load only slows a mode
down, so a mode's QA/s counts each chunk at the mode's fastest pass over it (see `summarize`).
This matters: PyTorch's OpenMP threads are far more sensitive than TF's thread pool to other
processes on the same cores (a MiniLM forward pass then jumps from ~30 ms to ~900 ms), and a
median would mostly measure the neighbours. `load_average_1min` records the machine's load.

Data: --questions SQuAD 2.0 dev questions spread evenly over ../shared/data/squad2-dev when
present, else the synthetic dev split.

Where one question's time goes: after the timed rounds, each exported model answers the first
16 questions in this process without a server, whole and by stage (tokenizing into windows, the
encoder on the windows, and the rest: window grouping and span decoding), each question counted
at its fastest of 3 calls (`single_question_ms`).

Result: value = QA/s of road_tf's fastest mode (precision x API x concurrency c) ÷ the
baseline's QA/s at the same c, where the baseline at c=1 is one pipeline call per question and
at c=16 is batch_size 16. Goal ≥ 2.0. Also reported: `value_float32` (the same ratio for the
float32 export alone), the ratio for each precision and c, road_tf's fastest mode ÷ the
baseline's fastest mode, how many answers the two precisions share, whether this CPU has
bfloat16 instructions, and per mode QA/s, p50/p99 latency and the median round's QA/s.
"""

import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import common

# This script is named like the repository's `serving` package, which must win `import serving`
# even when the repository root was already on sys.path behind benchmarks/ (PYTHONPATH=.).
sys.path.insert(0, str(common.REPO))
sys.path.insert(1, str(common.REPO / "tests"))

import numpy as np  # noqa: E402

from road_tf.errors import ArgumentParser, ConfigError, RoadError, cli_main, whole_number  # noqa: E402
from serving import client  # noqa: E402
from serving.batching import read_batching_parameters  # noqa: E402

SQUAD_DEV = "data/squad2-dev/squad2-dev-public.json.gz"
MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 384, 128, 64
PRECISIONS = {"bf16": "bfloat16", "fp32": "float32"}
CONCURRENCY = (1, 16)
APIS = ("grpc", "rest")
BATCHING_CONFIG = common.REPO / "serving" / "batching.config"
MAX_QUESTIONS = 6134
"""The most --questions: all of the SQuAD 2.0 dev public half (load_questions checks the data at hand)."""
BASELINE_MODES = tuple(f"hf_batch{c}" for c in CONCURRENCY)
WARMUP_QUESTIONS = 16
BREAKDOWN_QUESTIONS, BREAKDOWN_REPEATS = 16, 3
PROFILE_RUNS = 10
# Kernel name fragments -> the encoder part they do, first match wins (`encoder_op_ms`).
OP_GROUPS = ((("BatchMatMul",), "attention matmuls"), (("MatMul",), "dense matmuls (fused bias, GELU)"),
             (("Softmax",), "softmax"), (("Transpose",), "transposes"),
             (("Mul", "SquaredDifference", "Mean", "Rsqrt", "Add", "Sub"), "layer norms, residual adds, scaling"))
BASELINE_SCRIPT = common.REPO / "benchmarks" / "hf_qa_baseline.py"


def parse_args(argv):
    """Command-line flags -> argparse.Namespace; RoadError for values out of range."""
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--questions", type=whole_number, default=192,
                        help=f"questions asked by every mode (default 192, at most {MAX_QUESTIONS:,})")
    parser.add_argument("--chunk", type=whole_number, default=32,
                        help=f"questions per round (default 32, at most {MAX_QUESTIONS:,})")
    parser.add_argument("--passes", type=whole_number, default=3,
                        help=f"passes over all the questions (default 3, at most {common.MAX_REPEATS})")
    parser.add_argument("--threads", type=whole_number, default=2,
                        help="CPU cores and threads for each side (default 2, at most the cores this process may use)")
    parser.add_argument("--batching-parameters", default=str(BATCHING_CONFIG),
                        help="the devserver's --batching_parameters_file (default serving/batching.config)")
    parser.add_argument("--precisions", default="auto", choices=("auto", "both", "fp32"),
                        help="exports to serve: fp32 and bf16 (both), fp32 only, or auto (default): bf16 only "
                             "when this CPU has bfloat16 instructions, since emulated bfloat16 runs ~5x slower")
    parser.add_argument("--jit-compile", default="off", choices=("on", "off"),
                        help="export.jit_compile of the exports (default off, the default export; on: the XLA "
                             "encoder, whose shapes the devserver compiles from the warm-up requests as it loads)")
    args = common.parse_flags(parser, argv, bounds={"questions": (1, MAX_QUESTIONS), "chunk": (1, MAX_QUESTIONS),
                                                    "passes": (1, common.MAX_REPEATS), "threads": common.THREADS})
    # Read now, as the devserver will read it: a bad file would otherwise stop the run only after the
    # baseline venv and the exports. The devserver runs in the repository root, so the path is made absolute.
    args.batching_parameters = os.path.abspath(args.batching_parameters)
    try:
        read_batching_parameters(args.batching_parameters)
    except ConfigError as error:
        raise RoadError(f"--batching-parameters {error}") from None
    return args


def chosen_precisions(choice, cpu_bfloat16):
    """{tag: export.precision} to benchmark for --precisions `choice` on a CPU with or without
    bfloat16 instructions (`cpu_bfloat16`)."""
    if choice == "both" or (choice == "auto" and cpu_bfloat16):
        return dict(PRECISIONS)
    return {"fp32": PRECISIONS["fp32"]}


def road_modes(precisions):
    """The road_tf modes `{tag}_{api}_c{c}` of the benchmarked precisions."""
    return tuple(f"{tag}_{api}_c{c}" for tag in precisions for api in APIS for c in CONCURRENCY)


def load_questions(count, work_dir):
    """`count` (question, context) pairs spread evenly over the data -> (pairs, name of the source)."""
    from road_tf.data.squad import read_squad_json
    from road_tf.data.synthetic import generate

    path = common.shared_file(SQUAD_DEV)
    source = "squad2-dev-public"
    if path is None:
        path = generate(work_dir / "synthetic", train_size=8, dev_size=max(count, 8))["squad"]["dev"]
        source = "synthetic"
    examples = read_squad_json(path)
    if count > len(examples):
        raise RoadError(f"--questions {count}: {path} holds only {len(examples)} questions")
    chosen = [examples[i * len(examples) // count] for i in range(count)]
    return [(example.question, example.context) for example in chosen], source


def model_name(tag):
    """The served model of one precision tag ("bf16" or "fp32")."""
    return f"road_bench_{tag}"


def export_minilm_qa(base_dir, precisions, jit_compile):
    """Exports the MiniLM QA model (random QA head, seed 0) once per precision of `precisions`
    ({tag: export.precision}), with export.jit_compile = `jit_compile`.

    Returns:
        ({tag: version dir}, tokenizer, seconds).
    """
    import dataclasses

    import keras

    from road_tf.config import load_config
    from road_tf.data.tokenizer import load_tokenizer
    from road_tf.models.task_model import build_model
    from road_tf.saved_model import export_qa_model
    from road_tf.tasks import get_task

    begin = time.perf_counter()
    config = load_config(overrides=["model.pretrained=minilm", f"data.max_seq_length={MAX_SEQ_LENGTH}",
                                    f"data.doc_stride={DOC_STRIDE}", f"data.max_query_length={MAX_QUERY_LENGTH}",
                                    f"export.jit_compile={str(jit_compile).lower()}"])
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task("squad2")
    keras.utils.set_random_seed(0)
    model = build_model(config.model, [task], tokenizer.vocabulary_size, config.data.max_seq_length, "student")
    version_dirs = {}
    for tag, precision in precisions.items():
        precise = dataclasses.replace(config, export=dataclasses.replace(config.export, precision=precision))
        version_dirs[tag] = export_qa_model(model, task, tokenizer, precise, base_dir=base_dir,
                                            model_name=model_name(tag))
    return version_dirs, tokenizer, time.perf_counter() - begin


def write_models_config(version_dirs, path):
    """A ModelServerConfig text proto serving every exported model -> its path."""
    entries = "".join(f'  config {{ name: "{model_name(tag)}" base_path: "{directory.parent}" '
                      f'model_platform: "tensorflow" }}\n' for tag, directory in version_dirs.items())
    path.write_text(f"model_config_list {{\n{entries}}}\n", encoding="utf-8")
    return path


def count_windows(tokenizer, pairs):
    """The windows road_tf cuts the questions into -> (how many, mean non-padding tokens per window)."""
    import tensorflow as tf

    from road_tf.data.features import PADDING_MASK, qa_windows

    windows = qa_windows(tokenizer, tf.constant([q for q, _ in pairs]), tf.constant([c for _, c in pairs]),
                         MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE)
    return int(windows["example_index"].shape[0]), float(tf.reduce_mean(tf.reduce_sum(windows[PADDING_MASK], 1)))


def single_question_breakdown(version_dirs, tokenizer, pairs):
    """Where one question's time goes in each exported model, called in this process (no server).

    Stages: the whole serving_default call; tokenizing into windows (`window_function`); the
    encoder (the serve_token_ids signature on the windows cut to their longest, as one window
    group); the rest (window grouping, span decoding, answer text) is whole minus both. Each of
    the first BREAKDOWN_QUESTIONS pairs counts at its fastest of BREAKDOWN_REPEATS calls (other
    processes only slow calls down). Each signature first answers one full window, as the
    export's first warm-up request does in the server: the first call fixes the layout of the
    cached weights.

    Returns:
        {tag: {"whole_ms", "tokenize_ms", "encoder_ms", "rest_ms", "tokens", "encoder_op_ms"}}:
        means over the questions (tokens: non-padding tokens per question); encoder_op_ms: the
        first question's encoder call by part (`encoder_op_ms`).
    """
    import tensorflow as tf

    from road_tf.config import DataConfig
    from road_tf.data.features import MODEL_INPUTS, PADDING_MASK, window_function
    from road_tf.saved_model import context_of_length

    tokenize = window_function(tokenizer, MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE)
    full = (tf.constant(["Who?"]), tf.constant([context_of_length(MAX_SEQ_LENGTH, DataConfig().max_context_bytes)]))
    breakdown = {}
    for tag, directory in version_dirs.items():
        signatures = tf.saved_model.load(str(directory)).signatures
        answer, encoder = signatures["serving_default"], signatures["serve_token_ids"]
        answer(question=full[0], context=full[1])
        encoder(**{key: value for key, value in tokenize(*full).items() if key in MODEL_INPUTS})
        stages, first_cut = {"whole": [], "tokenize": [], "encoder": [], "tokens": []}, None
        for question, context in pairs[:BREAKDOWN_QUESTIONS]:
            q, c = tf.constant([question]), tf.constant([context])
            windows = tokenize(q, c)
            lengths = tf.reduce_sum(windows[PADDING_MASK], 1)
            cut = {key: windows[key][:, :int(tf.reduce_max(lengths))] for key in MODEL_INPUTS}
            first_cut = first_cut or cut
            calls = {"whole": lambda: answer(question=q, context=c), "tokenize": lambda: tokenize(q, c),
                     "encoder": lambda: encoder(**cut)}
            for name, call in calls.items():
                call()
                stages[name].append(min(common.time_once(call)[0] for _ in range(BREAKDOWN_REPEATS)) * 1000)
            stages["tokens"].append(int(tf.reduce_sum(lengths)))
        first = {key: value.numpy() for key, value in first_cut.items()}
        means = {name: statistics.mean(values) for name, values in stages.items()}
        breakdown[tag] = {**{f"{name}_ms": round(means[name], 2) for name in ("whole", "tokenize", "encoder")},
                          "rest_ms": round(means["whole"] - means["tokenize"] - means["encoder"], 2),
                          "tokens": round(means["tokens"], 1),
                          "encoder_op_ms": {"tokens": int(first[PADDING_MASK].sum()),
                                            **encoder_op_ms(directory, first)}}
    return breakdown


def op_group(op_type):
    """The encoder part (OP_GROUPS) a kernel of type `op_type` does, "other" if none."""
    for fragments, group in OP_GROUPS:
        if any(fragment in op_type for fragment in fragments):
            return group
    return "other"


def encoder_op_ms(version_dir, windows):
    """Kernel time of the serve_token_ids signature on `windows` ({MODEL_INPUTS name: int32 [N, L]}),
    by encoder part: the SavedModel run in a TF1 session with FULL_TRACE step stats, each kernel's
    wall time summed over PROFILE_RUNS calls (after one untimed call) and averaged.

    Returns:
        {part: ms per call}, plus "sum": their total and "traced_call": the traced calls' mean wall
        time (tracing adds overhead to every kernel, so compare parts, not absolute times).
    """
    import collections

    import tensorflow as tf

    totals, seconds = collections.Counter(), 0.0
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir)).signature_def[
            "serve_token_ids"]
        feeds = {tensor.name: windows[name] for name, tensor in signature.inputs.items()}
        fetches = [tensor.name for tensor in signature.outputs.values()]
        session.run(fetches, feeds)
        for _ in range(PROFILE_RUNS):
            metadata = tf.compat.v1.RunMetadata()
            begin = time.perf_counter()
            session.run(fetches, feeds, run_metadata=metadata,
                        options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE))
            seconds += time.perf_counter() - begin
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op_type = node.timeline_label.split(" = ")[-1].split("(")[0] if " = " in node.timeline_label else ""
                    if op_type and "PartitionedCall" not in op_type:
                        totals[op_group(op_type)] += node.all_end_rel_micros
    parts = {group: round(micros / PROFILE_RUNS / 1000, 2) for group, micros in totals.most_common()}
    return {**parts, "sum": round(sum(parts.values()), 2), "traced_call": round(seconds / PROFILE_RUNS * 1000, 2)}


def start_server(models_config, batching_parameters, names, threads, cores, timeout=900.0):
    """Starts the devserver with request batching on free ports, pinned to `cores`, and waits
    until it serves every model in `names` -> (Popen, REST URL, gRPC target)."""
    from helpers_serving import free_port, http_json  # the tests' helpers (they import TensorFlow)

    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.devserver", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         f"--model_config_file={models_config}", "--enable_batching",
         f"--batching_parameters_file={batching_parameters}", "--file_system_poll_wait_seconds=0",
         "--xla_cpu_compilation_enabled=true"],
        cwd=common.REPO, env=common.child_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    rest_url = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RoadError(f"the devserver exited early: {process.stderr.read().strip()[-500:]}")
        try:
            if all(http_json("GET", f"{rest_url}/v1/models/{name}", timeout=2.0)[0] == 200 for name in names):
                return process, rest_url, f"127.0.0.1:{grpc_port}"
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RoadError(f"the devserver did not serve {', '.join(names)} within {timeout:.0f} s")


def stop_server(process):
    """SIGTERM, then wait (kill after 30 s)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def closed_loop(ask, pairs, concurrency):
    """Answers every pair, one question per request, with `concurrency` requests in flight.

    Args:
        ask: (question, context) -> answer row dict; called from `concurrency` threads.
        pairs: list of (question, context).
    Returns:
        (wall seconds, list of per-request latencies in seconds, list of answers in input order).
    """
    answers, latencies, errors = [None] * len(pairs), [], []
    next_index, lock = iter(range(len(pairs))), threading.Lock()

    def worker():
        while True:
            with lock:
                index = next(next_index, None)
            if index is None or errors:
                return
            started = time.perf_counter()
            try:
                answers[index] = ask(*pairs[index])["answer"]
            except Exception as error:  # every failed request ends the run, whatever its kind
                errors.append(str(error) or repr(error))
                return
            latencies.append(time.perf_counter() - started)

    begin = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RoadError(f"a request failed: {errors[0]}")
    return time.perf_counter() - begin, latencies, answers


class Baseline(common.BaselineWorker):
    """benchmarks/hf_qa_baseline.py running in .venv-baseline."""

    def __init__(self, questions_file, threads, cores):
        from road_tf.minilm import minilm_path

        super().__init__(BASELINE_SCRIPT, ["--model-dir", str(minilm_path()), "--questions", str(questions_file),
                                           "--threads", str(threads)], threads, cores)

    def run(self, batch_size, start, stop):
        """Answers questions[start:stop] at `batch_size` -> (seconds, latencies, answers)."""
        reply = self.request({"batch_size": batch_size, "start": start, "stop": stop})
        return reply["seconds"], reply["latencies"], reply["answers"]


def road_askers(rest_url, grpc_target, tags):
    """{"{tag}_{api}": (question, context) -> answer row} for the road_tf server's models of
    precision `tags`, and the predictors to close (a gRPC channel; a pool of kept-alive REST
    connections)."""
    predictors = client.GrpcPredictor(grpc_target, timeout=120), client.RestPredictor(rest_url, timeout=120)
    askers = {}
    for tag in tags:
        for api, predictor in zip(APIS, predictors):
            askers[f"{tag}_{api}"] = lambda q, c, name=model_name(tag), predictor=predictor: predictor.predict(
                name, [q], [c])[0]
    return askers, predictors


def percentile_ms(latencies, q):
    """The q-th percentile of latencies (seconds) in milliseconds, or None when there are none."""
    return round(float(np.percentile(latencies, q)) * 1000, 1) if latencies else None


def agreement(answers, others):
    """"k/n": how many of two modes' n answers to the same questions are the same string."""
    return f"{sum(a == b for a, b in zip(answers, others))}/{len(answers)}"


def summarize(runs):
    """Per-mode results from {mode: [(chunk index, questions, seconds, latencies) per round]}.

    Other processes only ever slow a mode down, so each chunk counts with the mode's fastest
    pass over it: qa_per_s = all questions / the sum of those fastest times. p50_ms and p99_ms
    pool the requests of the passes that count (None for the batched baseline, which has no
    per-request latency); median_round_qa_per_s is the median of every round's QA/s.
    """
    summary = {}
    for mode, measured in runs.items():
        fastest = {}
        for chunk, count, seconds, latencies in measured:
            if chunk not in fastest or seconds < fastest[chunk][1]:
                fastest[chunk] = (count, seconds, latencies)
        counted = fastest.values()
        latencies = [value for _, _, values in counted for value in values]
        summary[mode] = {
            "qa_per_s": round(sum(c for c, _, _ in counted) / sum(s for _, s, _ in counted), 2),
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
            "median_round_qa_per_s": round(common.median([count / seconds for _, count, seconds, _ in measured]), 2),
        }
    return summary


def mode_runners(pairs, askers, baseline):
    """{mode: run(start, stop) -> (seconds, latencies, answers)} answering pairs[start:stop].

    road_tf modes are `{tag}_{api}_c{c}` (c single-question requests in flight to the model of
    precision `tag`), baseline modes `hf_batch{c}` (the pipeline at batch size c), for each c in
    CONCURRENCY.
    """
    runners = {}
    for name, ask in askers.items():
        for c in CONCURRENCY:
            runners[f"{name}_c{c}"] = lambda start, stop, ask=ask, c=c: closed_loop(ask, pairs[start:stop], c)
    for c in CONCURRENCY:
        runners[f"hf_batch{c}"] = lambda start, stop, c=c: baseline.run(c, start, stop)
    return runners


def measure(runners, num_questions, chunk, passes):
    """Warm-up, then interleaved rounds -> ({mode: [(chunk index, questions, seconds, latencies)]},
    {mode: answers}).

    The questions are cut into chunks of `chunk`; each round sends one chunk through every mode,
    the mode order rotating from round to round, so that load from other processes falls on
    every mode alike. `passes` passes over all chunks; `answers` holds each mode's answers to
    every question from the first pass.
    """
    for mode in runners:
        if mode not in BASELINE_MODES:
            runners[mode](0, min(WARMUP_QUESTIONS, num_questions))
    bounds = [(start, min(start + chunk, num_questions)) for start in range(0, num_questions, chunk)]
    modes = list(runners)
    runs, answers = {mode: [] for mode in modes}, {mode: [] for mode in modes}
    for round_index in range(passes * len(bounds)):
        chunk_index = round_index % len(bounds)
        start, stop = bounds[chunk_index]
        shift = round_index % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            seconds, latencies, got = runners[mode](start, stop)
            runs[mode].append((chunk_index, stop - start, seconds, latencies))
            if round_index < len(bounds):
                answers[mode].extend(got)
        print(f"round {round_index + 1}, questions {start}-{stop - 1}: "
              + ", ".join(f"{mode} {(stop - start) / runs[mode][-1][2]:.1f}" for mode in modes) + " QA/s", flush=True)
    return runs, answers


def headline(summary, precisions):
    """The result's ratios from the per-mode summary.

    Returns:
        (value, fastest road_tf mode, its concurrency, {tag: {"c1": ..., "c16": ...}} the fastest
        API of each precision ÷ the baseline at each concurrency, fastest road_tf mode ÷ fastest
        baseline mode).
    """
    def rate(mode):
        return summary[mode]["qa_per_s"]

    best = max(road_modes(precisions), key=rate)
    best_c = int(best.rsplit("_c", 1)[1])
    ratios = {tag: {f"c{c}": round(max(rate(f"{tag}_{api}_c{c}") for api in APIS) / rate(f"hf_batch{c}"), 4)
                    for c in CONCURRENCY} for tag in precisions}
    best_vs_best = rate(best) / max(rate(mode) for mode in BASELINE_MODES)
    return rate(best) / rate(f"hf_batch{best_c}"), best, best_c, ratios, round(best_vs_best, 4)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    begin, load_before = time.perf_counter(), os.getloadavg()[0]
    common.ensure_baseline_venv()
    cores = common.cores_for(args.threads)
    os.sched_setaffinity(0, cores)
    cpu_bfloat16 = common.cpu_has_bfloat16()
    precisions = chosen_precisions(args.precisions, cpu_bfloat16)
    with tempfile.TemporaryDirectory(prefix="road_tf_serving_bench_") as work:
        work_dir = pathlib.Path(work)
        pairs, source = load_questions(args.questions, work_dir)
        questions_file = work_dir / "questions.jsonl"
        questions_file.write_text("".join(json.dumps({"question": q, "context": c}) + "\n" for q, c in pairs),
                                  encoding="utf-8")
        jit_compile = args.jit_compile == "on"
        version_dirs, tokenizer, export_seconds = export_minilm_qa(work_dir / "saved_models", precisions, jit_compile)
        windows, tokens_per_window = count_windows(tokenizer, pairs)
        print(f"{source}: {len(pairs)} questions, {windows} road_tf windows of {MAX_SEQ_LENGTH} tokens "
              f"({tokens_per_window:.0f} not padding on average); exported {len(version_dirs)} models in "
              f"{export_seconds:.1f} s; cores {cores}", flush=True)
        models_config = write_models_config(version_dirs, work_dir / "models.config")
        server, rest_url, grpc_target = start_server(models_config, args.batching_parameters,
                                                     [model_name(tag) for tag in precisions], args.threads, cores)
        predictors, baseline = (), None
        try:
            baseline = Baseline(questions_file, args.threads, cores)
            askers, predictors = road_askers(rest_url, grpc_target, precisions)
            runs, answers = measure(mode_runners(pairs, askers, baseline), len(pairs), args.chunk, args.passes)
        finally:
            for predictor in predictors:
                predictor.close()
            if baseline is not None:
                baseline.close()
            stop_server(server)
        breakdown = single_question_breakdown(version_dirs, tokenizer, pairs)
    summary = summarize(runs)
    value, best, best_c, ratios, best_vs_best = headline(summary, precisions)
    same_answers = agreement(answers["bf16_grpc_c1"], answers["fp32_grpc_c1"]) if "bf16" in precisions else "bf16 not run"
    common.result_line(
        "serving", value, 2.0, "higher", "ratio of QA/s",
        definition=(f"QA/s of road_tf's fastest mode ({best}) / QA/s of the HF pipeline (float32) at the same "
                    f"concurrency (hf_batch{best_c}); c=1: one question per request vs one pipeline call per "
                    "question; c=16: 16 single-question requests in flight (the devserver batches them) vs pipeline "
                    "batch_size 16; QA/s = questions / sum over chunks of the mode's fastest pass over the chunk"),
        best_mode=best, value_float32=max(ratios["fp32"].values()), ratio_by_precision_and_concurrency=ratios,
        ratio_best_vs_best_baseline=best_vs_best, modes=summary, cpu_bfloat16=cpu_bfloat16,
        precisions=list(precisions), jit_compile=jit_compile, bf16_fp32_same_answers=same_answers,
        grpc_rest_same_answers={f"{tag}_c{c}": agreement(answers[f"{tag}_grpc_c{c}"], answers[f"{tag}_rest_c{c}"])
                                for tag in precisions for c in CONCURRENCY},
        data=source, questions=len(pairs), road_tf_windows=windows,
        road_tf_tokens_per_window=round(tokens_per_window, 1), chunk=args.chunk, passes=args.passes,
        rounds=len(runs["hf_batch1"]), threads=args.threads, batching_parameters=args.batching_parameters, cores=cores, max_seq_length=MAX_SEQ_LENGTH,
        doc_stride=DOC_STRIDE, max_query_length=MAX_QUERY_LENGTH,
        baseline={name: setting for name, setting in baseline.info.items() if name != "ready"},
        single_question_ms=breakdown, export_seconds=round(export_seconds, 1),
        load_average_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        total_seconds=round(time.perf_counter() - begin, 1),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
