"""The benchmark scripts' flag checks (benchmarks/common.py `parse_flags` and the scripts' bounds):
a value out of range, more threads than cores, or a bad --batching-parameters file is one `error:`
line and exit 2, before any work.

Only the flags are parsed: serving.py and train_throughput.py run with `ensure_baseline_venv`
replaced by a function that fails the test, so a flag that slipped through never builds the
baseline venv (benchmarks/setup_baseline.sh) or exports a model.
"""

import argparse
import importlib.util
import json
import os
import sys
import types

import numpy as np
import pytest

from conftest import REPO
from road_tf.errors import whole_number
from test_cli_usage import refusal

BIG = str(2**63 - 1)
"""The largest whole number a flag takes (64 bits): above every benchmark's bounds."""
CORES = len(os.sched_getaffinity(0))

# (script, argv, part of the message): every integer flag of every benchmark below and above its range.
OUT_OF_RANGE = [
    ("kd_step.py", ["--rounds", "5"], "--rounds must be at least 20, got 5"),
    ("kd_step.py", ["--rounds", BIG], "--rounds must be at most 1,000"),
    ("kd_step.py", ["--rounds", "9" * 23], "argument --rounds: must be a whole number of at most 64 bits"),
    ("kd_step.py", ["--warmup", "0"], "--warmup must be at least 1"),
    ("kd_step.py", ["--warmup", BIG], "--warmup must be at most"),
    ("featurize.py", ["--rounds", BIG], "--rounds must be at most 1,000"),
    ("featurize.py", ["--rounds", "0"], "--rounds must be at least 1"),
    ("featurize.py", ["--limit", "-1"], "--limit must be at least 0"),
    ("featurize_long.py", ["--rounds", "0"], "--rounds must be at least 1"),
    ("featurize_long.py", ["--rounds", BIG], "--rounds must be at most"),
    ("trim_padding.py", ["--warmup", "-5"], "--warmup must be at least 1, got -5"),
    ("trim_padding.py", ["--warmup", "0"], "--warmup must be at least 1"),
    ("trim_padding.py", ["--warmup", BIG], "--warmup must be at most"),
    ("trim_padding.py", ["--rounds", "0"], "--rounds must be at least 1"),
    ("trim_padding.py", ["--rounds", BIG], "--rounds must be at most"),
    ("trim_padding.py", ["--multiple", "0"], "--multiple must be at least 1"),
    ("trim_padding.py", ["--multiple", "257"], "--multiple must be at most 256"),
    ("multitask_step.py", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("multitask_step.py", ["--batch-size", "2048"], "--batch-size must be at most 1,024"),
    ("multitask_step.py", ["--seq-length", "0"], "--seq-length must be at least 5"),
    ("multitask_step.py", ["--seq-length", "4"], "--seq-length must be at least 5"),
    ("multitask_step.py", ["--seq-length", "513"], "--seq-length must be at most 512"),
    ("multitask_step.py", ["--layers", "0"], "--layers must be at least 1"),
    ("multitask_step.py", ["--layers", "25"], "--layers must be at most 24"),
    ("multitask_step.py", ["--hidden", "-64"], "--hidden must be at least 1"),
    ("multitask_step.py", ["--hidden", "1088"], "--hidden must be at most 1,024"),
    ("multitask_step.py", ["--warmup", "0"], "--warmup must be at least 1"),
    ("multitask_step.py", ["--rounds", BIG], "--rounds must be at most"),
    ("multitask_step.py", ["--steps", BIG], "--steps must be at most"),
    ("train_throughput.py", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("train_throughput.py", ["--batch-size", "257"], "--batch-size must be at most 256"),
    ("train_throughput.py", ["--rounds", BIG], "--rounds must be at most"),
    ("train_throughput.py", ["--steps", "0"], "--steps must be at least 1"),
    ("train_throughput.py", ["--steps", BIG], "--steps must be at most"),
    ("train_throughput.py", ["--steps-per-execution", "0"], "--steps-per-execution must be at least 1"),
    ("train_throughput.py", ["--threads", "0"], "--threads must be at least 1"),
    ("serving.py", ["--questions", "0"], "--questions must be at least 1"),
    ("serving.py", ["--questions", BIG], "--questions must be at most 6,134"),
    ("serving.py", ["--chunk", "0"], "--chunk must be at least 1"),
    ("serving.py", ["--chunk", BIG], "--chunk must be at most"),
    ("serving.py", ["--passes", "-1"], "--passes must be at least 1"),
    ("serving.py", ["--passes", BIG], "--passes must be at most"),
    ("serving.py", ["--threads", "0"], "--threads must be at least 1"),
]


def load_benchmark(name, monkeypatch):
    """benchmarks/`name` loaded as a module (benchmarks/ importable), with common.ensure_baseline_venv
    failing the test if it is ever reached."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmark_args_{name[:-3]}", REPO / "benchmarks" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_venv():
        raise AssertionError("the flags were accepted: the baseline venv would be set up")

    monkeypatch.setattr(sys.modules["common"], "ensure_baseline_venv", no_venv)
    return module


@pytest.mark.parametrize("name, argv, message", OUT_OF_RANGE, ids=lambda value: str(value))
def test_a_benchmark_refuses_an_integer_flag_out_of_range(name, argv, message, monkeypatch, capsys):
    line = refusal(load_benchmark(name, monkeypatch).main, argv, capsys)
    assert message in line, line


@pytest.mark.parametrize("name, flag", [("featurize.py", "--rounds"), ("featurize_long.py", "--rounds"),
                                        ("kd_step.py", "--rounds"), ("multitask_step.py", "--rounds"),
                                        ("serving.py", "--passes"), ("train_throughput.py", "--rounds"),
                                        ("trim_padding.py", "--rounds")])
def test_a_benchmark_refuses_a_flag_given_twice(name, flag, monkeypatch, capsys):
    """argparse kept the last value without a word (`--rounds 1 --rounds 2` ran 2 rounds)."""
    line = refusal(load_benchmark(name, monkeypatch).main, [flag, "1", f"{flag}=2"], capsys)
    assert line == f"error: argument {flag}: given 2 times; give it once (see --help)", line


@pytest.mark.parametrize("name, threads", [("serving.py", "999"), ("train_throughput.py", "64"),
                                           ("serving.py", str(CORES + 1)), ("train_throughput.py", str(CORES + 1))])
def test_more_threads_than_cores_are_refused_naming_both(name, threads, monkeypatch, capsys):
    if int(threads) <= CORES:
        pytest.skip(f"this machine lets the process use {CORES} cores")
    line = refusal(load_benchmark(name, monkeypatch).main, ["--threads", threads], capsys)
    assert f"--threads {threads}: more than the {CORES} CPU cores" in line, line


BATCHING_FILES = {
    "missing": (None, "no such batching parameters file"),
    "folder": ("folder", "a folder"),
    "not a text proto": (b"max_batch_size { value: abc }", "not a BatchingParameters text proto"),
    "out of range": (b"num_batch_threads { value: 0 }", "num_batch_threads must be at least 1"),
    "not UTF-8": (b"\xff\xfe", "not UTF-8"),
}


@pytest.mark.parametrize("case", BATCHING_FILES)
def test_serving_checks_the_batching_parameters_file_before_any_work(case, tmp_path, monkeypatch, capsys):
    content, message = BATCHING_FILES[case]
    path = tmp_path / "batching.config"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    line = refusal(load_benchmark("serving.py", monkeypatch).main, ["--batching-parameters", str(path)], capsys)
    assert line.startswith(f"error: --batching-parameters {path}") and message in line, line


def test_serving_refuses_a_device_as_batching_parameters(monkeypatch, capsys):
    line = refusal(load_benchmark("serving.py", monkeypatch).main, ["--batching-parameters", "/dev/zero"], capsys)
    assert "a device or pipe" in line, line


def test_serving_reads_the_batching_parameters_and_passes_an_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "b.config").write_text("max_batch_size { value: 8 }\n")
    monkeypatch.chdir(tmp_path)
    args = load_benchmark("serving.py", monkeypatch).parse_args(["--batching-parameters", "b.config"])
    assert args.batching_parameters == str(tmp_path / "b.config")  # the devserver runs in the repository root


def test_the_defaults_of_every_benchmark_are_in_range(monkeypatch):
    serving = load_benchmark("serving.py", monkeypatch)
    assert serving.parse_args([]).threads <= CORES
    assert load_benchmark("train_throughput.py", monkeypatch).parse_args([]).threads <= CORES


def test_parse_flags_refuses_to_run_with_an_integer_flag_without_bounds(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import common

    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--rounds", type=whole_number, default=3)
    parser.add_argument("--steps", type=whole_number, default=3)
    with pytest.raises(ValueError, match="without bounds: \\['steps'\\]"):
        common.parse_flags(parser, [], bounds={"rounds": (1, common.MAX_REPEATS)})
    assert common.parse_flags(parser, ["--steps", "4"], bounds={"rounds": (1, 9), "steps": (1, None)}).steps == 4


# The baseline workers run in .venv-baseline; their flags are parsed here with a stand-in torch.
WORKER_CASES = [
    ("hf_qa_baseline.py", ["--model-dir", "m", "--questions", "q", "--threads", "0"], "--threads must be at least 1"),
    ("hf_qa_baseline.py", ["--model-dir", "m", "--questions", "q", "--threads", str(CORES + 1)], "more than the"),
    *(("hf_train_baseline.py", [arg for pair in {"--model-dir": "m", "--features": "f", "--batch-size": "8",
                                                 "--total-steps": "9", flag: value}.items() for arg in pair], message)
      for flag, value, message in [("--batch-size", "0", "--batch-size must be at least 1"),
                                   ("--total-steps", "0", "--total-steps must be at least 1"),
                                   ("--threads", str(CORES + 1), "more than the"),
                                   ("--warmup", "0", "--warmup must be at least 1"),
                                   ("--warmup", BIG, "--warmup must be at most")]),
]


@pytest.mark.parametrize("name, argv, message", WORKER_CASES, ids=lambda value: str(value))
def test_a_baseline_worker_refuses_flags_out_of_range(name, argv, message, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    line = refusal(load_benchmark(name, monkeypatch).main, argv, capsys)
    assert message in line, line


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe{}", "not valid UTF-8: byte 0xff at offset 0"),
    (b"[" * 100_000, "record line 1: expected a JSON object with question and context"),
    (b"", "no questions"),
], ids=["not-utf8", "deep", "empty"])
def test_the_qa_baseline_worker_refuses_a_bad_questions_file_with_one_line(content, problem, tmp_path, monkeypatch,
                                                                             capsys):
    """Non-UTF-8 bytes and a deeply nested line were a UnicodeDecodeError and a RecursionError traceback."""
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(content)
    line = refusal(load_benchmark("hf_qa_baseline.py", monkeypatch).main,
                   ["--model-dir", str(tmp_path), "--questions", str(questions)], capsys)
    assert line.startswith(f"error: {questions}: ") and line.endswith(problem), line


def test_the_train_baseline_worker_refuses_an_npy_file_with_one_line(tmp_path, monkeypatch, capsys):
    """A single .npy array loaded as an ndarray, which `with` refused: a TypeError traceback."""
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    features = tmp_path / "f.npy"
    np.save(features, np.zeros(3, np.int32))
    line = refusal(load_benchmark("hf_train_baseline.py", monkeypatch).main,
                   ["--model-dir", str(tmp_path), "--features", str(features), "--batch-size", "1",
                    "--total-steps", "1"], capsys)
    assert line == f"error: {features}: cannot read the features (not an .npz archive of named arrays)"


@pytest.mark.parametrize("given", ["file", "", "runs/a\nb", "~"])
def test_trim_padding_checks_its_cache_dir_and_takes_it_as_given(given, tmp_path, monkeypatch, capsys):
    """--cache-dir went into the recipe as a `--set` value, read as YAML ("runs/a\\nb" became "runs/a b",
    "~" null), and a file there was found only once the data had been featurized."""
    module = load_benchmark("trim_padding.py", monkeypatch)

    def loaded(*args, **kwargs):
        raise AssertionError("the data loaded before --cache-dir was checked")

    monkeypatch.setattr(module, "load_task_data", loaded)
    if given == "file":
        (tmp_path / "file").write_text("x")
        path = str(tmp_path / "file")
        line = refusal(module.main, ["--cache-dir", path], capsys)
        assert line == f"error: --cache-dir {path}: {path} is a file, not a folder", line
    elif not given:
        assert "--cache-dir: must not be empty" in refusal(module.main, ["--cache-dir", given], capsys)
    else:
        assert module.recipe("minilm", given, None).data.cache_dir == given


@pytest.mark.slow
def test_multitask_step_ends_with_the_result_line_of_every_benchmark(monkeypatch, capsys):
    """Its last line has the fields benchmarks/README.md gives every benchmark's, `met` included
    (it printed its own JSON without `met`); a model of one 64-wide layer keeps it to about a minute."""
    load_benchmark("multitask_step.py", monkeypatch).main(
        ["--batch-size", "8", "--seq-length", "16", "--layers", "1", "--hidden", "64", "--warmup", "1",
         "--rounds", "1", "--steps", "1"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"benchmark", "value", "goal", "better", "unit", "met"} <= set(result)
    assert result["benchmark"] == "multitask_step" and result["met"] == (result["value"] <= result["goal"])
