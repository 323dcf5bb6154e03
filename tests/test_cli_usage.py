"""Every command's usage errors: an unknown flag or a missing required one is one `error:` line, exit 2.

The commands are called in this process through their `main(argv)` (the benchmark scripts are
loaded from their files); each error is raised while the flags are parsed, before any work.
"""

import argparse
import importlib
import importlib.util
import re
import sys

import pytest

from conftest import REPO
from road_tf import evaluate
from road_tf.errors import finite_float, whole_number

MODULES = ["road_tf.train", "road_tf.predict", "road_tf.evaluate", "road_tf.export", "road_tf.experiments",
           "road_tf.cache_teacher", "serving.devserver", "serving.client", "pipelines.local_runner",
           "pipelines.kubeflow_runner"]
# The hf_*_baseline workers run in the baseline venv (PyTorch) and are driven by the benchmarks.
BENCHMARKS = sorted(path.name for path in (REPO / "benchmarks").glob("*.py")
                    if path.name != "common.py" and not path.name.startswith("hf_"))
# (command, argv, part of the message) for flags out of range in the benchmark scripts.
OUT_OF_RANGE = [("kd_step.py", ["--rounds", "0"], "--rounds"), ("featurize.py", ["--limit", "-1"], "--limit"),
                ("featurize_long.py", ["--rounds", "0"], "--rounds"),
                ("multitask_step.py", ["--batch-size", "12"], "multiple of 8"),
                ("multitask_step.py", ["--hidden", "100"], "multiple of 64")]


# (module, argv, part of the message) for flags out of range of the pipeline runners and serving commands.
FLAG_CASES = [("pipelines.local_runner", ["--margin", "nan"], "--margin"),
                ("pipelines.local_runner", ["--tolerance", "inf"], "--tolerance"),
                ("pipelines.local_runner", ["--min-dev-questions", "0"], "--min-dev-questions"),
                ("road_tf.predict", ["--model", "m", "--data", "d.json", "--output", "p.json", "--batch-size", "0"],
                 "argument --batch-size: must be a positive integer, got '0'"),
                ("pipelines.local_runner", ["--beam-arg", "direct_num_workers=2"], "not a Beam flag"),
                ("pipelines.local_runner", ["--beam-arg=--runner=Nonexistent"], "not a Beam runner"),
                ("pipelines.local_runner", ["--beam-arg=--direct_num_workers=abc"], "invalid int value: 'abc'"),
                ("pipelines.local_runner", ["--beam-arg=--job_name=a\nb"], "holds a control character"),
                ("pipelines.local_runner", ["--root", "{tmp}/\udcff"], "--root b'"),
                ("pipelines.local_runner", ["--data", "\udcff.json"], "--data b'\\xff.json': not UTF-8 text (byte 0xff at character 0)"),
                ("pipelines.local_runner", ["--eval-data", "{tmp}/dev.json"], "needs a SQuAD file for --data"),
                ("pipelines.local_runner", ["--data", "tfds", "--eval-data", "{tmp}/dev.json"], "not tfds"),
                ("pipelines.local_runner", ["--root", "/proc/road_tf_cannot_be_here"], "--root"),
                ("pipelines.local_runner", ["--serving-model-dir", "/proc/road_tf_cannot_be_here"],
                 "--serving-model-dir"),
                ("pipelines.kubeflow_runner", ["--image", "i", "--output", "/proc/road_tf/p.json"], "--output"),
                ("pipelines.kubeflow_runner", ["--image", "i", "--output", "{tmp}"], "is a folder"),
                ("pipelines.kubeflow_runner", ["--image", "i", "--output", "{tmp}/p.json", "--margin", "-inf"],
                 "--margin"),
                ("pipelines.kubeflow_runner", ["--image", "i", "--output", "{tmp}/p.json", "--beam-arg=-x"],
                 "not a Beam flag"),
                ("pipelines.kubeflow_runner", ["--image", "", "--output", "{tmp}/p.json"], "--image ''"),
                ("pipelines.kubeflow_runner", ["--image", "Road TFX:1", "--output", "{tmp}/p.json"],
                 "not a container image reference"),
                ("road_tf.cache_teacher", ["--output", "/proc/road_tf/t.tfrecord"], "cannot write there"),
                ("road_tf.cache_teacher", ["--output", "{tmp}"], "is a folder"),
                ("serving.client", ["q", "--context", "c", "--timeout", "nan"], "--timeout"),
                ("serving.client", ["q", "--context", "c", "--timeout", "-1"], "--timeout"),
                ("serving.client", ["q", "--context", "c", "--version", "-3"], "--version"),
                ("serving.devserver", ["--model_base_path", "{tmp}", "--model_name", "m", "--rest_api_port", "99999"],
                 "at most 65535")]


def benchmark_main(name):
    """The `main` of benchmarks/`name`, loaded from its file with benchmarks/ importable."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name[:-3]}", REPO / "benchmarks" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module.main


def refusal(main, argv, capsys):
    """Runs main(argv) -> its one stderr line, after checking exit status 2 and nothing on stdout."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert exit_info.value.code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and "usage:" not in captured.err
    return lines[0]


@pytest.mark.parametrize("module", MODULES)
def test_an_unknown_flag_is_one_line(module, capsys):
    line = refusal(importlib.import_module(module).main, ["--no-such-flag"], capsys)
    assert "--no-such-flag" in line or "arguments are required" in line, line


# (module, the arguments before the repeated flag, a flag that takes one value and that value).
REPEATED = [("road_tf.train", [], "--config", "demo"), ("road_tf.predict", [], "--model", "m"),
            ("road_tf.evaluate", ["squad2", "d.json", "p.json"], "--na-probs", "n.json"),
            ("road_tf.export", [], "--run-dir", "r"), ("road_tf.experiments", ["final"], "--output", "o"),
            ("road_tf.cache_teacher", [], "--output", "t.tfrecord"), ("serving.devserver", [], "--port", "8500"),
            ("serving.client", ["q", "--context", "c"], "--rest", "http://h:1"),
            ("pipelines.local_runner", [], "--root", "r"), ("pipelines.kubeflow_runner", [], "--image", "i")]


@pytest.mark.parametrize("module, argv, flag, value", REPEATED, ids=lambda value: str(value))
def test_a_flag_given_twice_is_one_line(module, argv, flag, value, capsys):
    """argparse keeps the last of a repeated flag silently: `--config demo --config no_kd` ran no_kd."""
    line = refusal(importlib.import_module(module).main, [*argv, flag, value, f"{flag}={value}"], capsys)
    assert f"argument {flag}: given 2 times; give it once" in line, line


def test_flags_that_collect_values_may_repeat():
    """--set (and the runners' --beam-arg) append: giving them twice is how they are used."""
    from road_tf import train
    args = train.parse_args(["--set", "train.steps=1", "--set", "train.seed=2"])
    assert args.overrides == ["train.steps=1", "train.seed=2"]


@pytest.mark.parametrize("module", ["road_tf.predict", "road_tf.cache_teacher", "road_tf.export"])
def test_a_missing_required_flag_is_one_line(module, capsys):
    line = refusal(importlib.import_module(module).main, [], capsys)
    assert "required" in line, line


@pytest.mark.parametrize("module, argv, message", FLAG_CASES, ids=lambda value: str(value))
def test_runners_and_serving_commands_refuse_flags_out_of_range_before_any_work(module, argv, message, tmp_path, capsys):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert message in refusal(importlib.import_module(module).main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


# (module, the other arguments (with the empty positional in place), the flag or positional left
# empty): an empty path is the current folder to Python and an empty flag reads as if it were not
# given, so neither may pass.
EMPTY_CASES = [("road_tf.train", [], "--config"), ("road_tf.train", [], "--output-dir"),
               ("road_tf.cache_teacher", ["--output", "t.tfrecord"], "--config"),
               ("road_tf.cache_teacher", [], "--output"),
               *(("road_tf.predict", ["--model", "m", "--data", "d.json", "--output", "p.json"], flag)
                 for flag in ("--model", "--data", "--output", "--na-probs")),
               ("road_tf.evaluate", ["squad2", "d.json", "p.json"], "--na-probs"),
               ("road_tf.evaluate", ["squad2", "", "p.json"], "data"),
               ("road_tf.evaluate", ["squad2", "d.json", ""], "predictions"),
               ("road_tf.evaluate", ["classification", "", "p.json"], "gold"),
               *(("road_tf.export", ["--run-dir", "r"], flag) for flag in ("--run-dir", "--base", "--model-name")),
               ("road_tf.experiments", ["final", "--scale", "tiny"], "--output"),
               *(("pipelines.local_runner", [], flag)
                 for flag in ("--config", "--data", "--eval-data", "--root", "--serving-model-dir")),
               *(("pipelines.kubeflow_runner", ["--image", "i", "--output", "p.json"], flag)
                 for flag in ("--output", "--pipeline-root", "--data-root", "--serving-model-dir")),
               *(("serving.client", ["q", "--context", "c"], flag) for flag in ("--output", "--model")),
               ("serving.client", ["q"], "--context-file"), ("serving.client", [], "--batch-file")]


@pytest.mark.parametrize("module, argv, flag", EMPTY_CASES, ids=lambda value: str(value))
def test_an_empty_path_or_name_is_refused_before_any_work(module, argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if flag in argv:  # given once, empty (a flag given twice is refused as such)
        argv = argv[:argv.index(flag)] + argv[argv.index(flag) + 2:]
    argv = argv + [flag, ""] if flag.startswith("--") else argv
    line = refusal(importlib.import_module(module).main, argv, capsys)
    assert f"argument {flag}: must not be empty" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_refuses_an_unknown_flag_in_one_line(name, capsys):
    assert "--no-such-flag" in refusal(benchmark_main(name), ["--no-such-flag"], capsys)


@pytest.mark.parametrize("name, argv, message", OUT_OF_RANGE, ids=lambda value: str(value))
def test_a_benchmark_refuses_flags_out_of_range(name, argv, message, capsys):
    assert message in refusal(benchmark_main(name), argv, capsys)


@pytest.mark.parametrize("text, whole, number", [
    ("7", 7, 7.0), ("-3", -3, -3.0), ("+2", 2, 2.0), ("007", 7, 7.0), ("1e-3", None, 0.001), ("0.5", None, 0.5),
    (".5", None, 0.5), ("1_0", None, None), ("1_0.5", None, None), ("\u0663", None, None), ("", None, None),
    (" 5", None, None), ("5 ", None, None), ("nan", None, None), ("inf", None, None), ("-Infinity", None, None),
    ("1e999", None, None), ("9" * 20, None, 1e20)])
def test_number_flags_read_ascii_decimal_text_only(text, whole, number):
    """`whole_number` and `finite_float`, the argparse types of every number flag, take ASCII decimal
    text of a finite number (an int within 64 bits) and refuse what int() and float() would also
    read: digit separators, other scripts' digits, blanks, nan and infinities."""
    for kind, expected in ((whole_number, whole), (finite_float, number)):
        if expected is None:
            with pytest.raises(argparse.ArgumentTypeError, match=f"^must be .*, got {re.escape(repr(text))}$"):
                kind(text)
        else:
            assert kind(text) == expected and type(kind(text)) is type(expected)


@pytest.mark.parametrize("kind", [whole_number, finite_float, evaluate.THRESHOLD, evaluate.NUM_CLASSES])
def test_a_number_flag_names_a_very_long_value_by_its_start(kind):
    """A refused value of thousands of characters is cut in the message, which stays one short line."""
    with pytest.raises(argparse.ArgumentTypeError) as error:
        kind("9" * 5000 + "x")
    assert len(str(error.value)) < 140 and "999..." in str(error.value)


# (command, argv, the message): number flags written as Python, not as ASCII decimal text.
NOT_DECIMAL = [("road_tf.experiments", ["final", "--seeds", "1_0"],
                "argument --seeds: must be a whole number in [1, 100], got '1_0'"),
               ("road_tf.predict", ["--batch-size", "\u0663"],
                "argument --batch-size: must be a positive integer, got '\u0663'"),
               ("pipelines.local_runner", ["--margin", "1_0"],
                "argument --margin: must be a decimal number in ASCII digits, got '1_0'"),
               ("serving.devserver", ["--model_base_path", "{tmp}", "--port", " 8500"],
                "argument --port: must be a whole number in ASCII digits, got ' 8500'"),
               ("serving.client", ["q", "--context", "c", "--batch-size", "1_0"],
                "argument --batch-size: must be a positive integer, got '1_0'"),
               ("road_tf.evaluate", ["squad2", "d.json", "p.json", "--na-prob-thresh", "0.2_5"],
                "argument --na-prob-thresh: must be a number in [0, 1], got '0.2_5'")]


@pytest.mark.parametrize("module, argv, message", NOT_DECIMAL, ids=lambda value: str(value))
def test_a_number_flag_that_is_not_ascii_decimal_text_is_one_line(module, argv, message, tmp_path, capsys):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert message in refusal(importlib.import_module(module).main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_benchmark_refuses_a_number_flag_that_is_not_ascii_decimal_text(capsys):
    line = refusal(benchmark_main("kd_step.py"), ["--rounds", "1_0"], capsys)
    assert "argument --rounds: must be a whole number in ASCII digits, got '1_0'" in line, line


def flags_without_help(main, argv, capsys):
    """The option lines of main(argv + ["--help"])'s help that say nothing after the flag (and its
    metavar), on their own line or, for a long flag, on the next."""
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    return [line.strip() for line, after in zip(lines, [*lines[1:], ""])
            if re.match(r"  -", line) and len(re.split(r"\s{2,}", line.strip())) == 1
            and not re.match(r" {3,}\S", after)]


HELP_CASES = [*((module, []) for module in MODULES), ("road_tf.evaluate", ["squad2"]),
              ("road_tf.evaluate", ["classification"])]


@pytest.mark.parametrize("module, argv", HELP_CASES, ids=lambda value: str(value))
def test_every_flag_of_a_command_says_what_it_does(module, argv, capsys):
    assert flags_without_help(importlib.import_module(module).main, argv, capsys) == []


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_flag_of_a_benchmark_says_what_it_does(name, capsys):
    assert flags_without_help(benchmark_main(name), [], capsys) == []
