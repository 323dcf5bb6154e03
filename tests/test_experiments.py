"""`python -m road_tf.experiments`: every row of every table at every scale is a valid run config,
tables are summarised and written as Markdown, CSV and PNG, and (slow) every table runs end to end
at the tiny scale and resumes without retraining."""

import csv
import dataclasses
import json
import math
import os
import pathlib
import threading

import numpy as np
import pytest
from conftest import one_error_line

from road_tf import experiments, run_clock, train
from road_tf.config import config_digest, config_from_dict, dump_yaml, load_config, resolve_recipe, to_dict
from road_tf.data import features
from road_tf.distillation.offline import teacher_notes
from road_tf.errors import RoadError
from road_tf.experiments import KD_FORMS, SCALES, TABLES, TEACHER_SETS, Experiments


def final_tiny_error(capsys, output, *flags):
    """The one line on stderr of `experiments final --scale tiny --output OUTPUT FLAGS...`, which must exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["final", "--scale", "tiny", "--output", str(output), *flags])
    return one_error_line(capsys, exit_info)


@pytest.fixture
def fake_teachers(monkeypatch, tmp_path):
    """Teacher runs and logit caches replaced by paths, so row configs build without training."""
    monkeypatch.setattr(Experiments, "teacher_runs",
                        lambda self, spec, ensemble: [tmp_path / f"{spec.size}-k{spec.k}-{i}" for i in
                                                      range(self.scale.ensemble if ensemble else 1)])
    monkeypatch.setattr(Experiments, "cached_logits", lambda self, section: tmp_path / "logits.tfrecord")


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_row_of_every_table_is_a_valid_config(scale, fake_teachers, tmp_path):
    built = Experiments(SCALES[scale], tmp_path)
    for table, rows in TABLES.items():
        for row in rows:
            distillation = built.distillation(row.teachers, row.kd) if row.teachers else None
            config = built.config("base", 0, SCALES[scale].student_steps, row.k, distillation)
            assert config.multitask.steps == (SCALES[scale].multitask["steps"] if row.k else 0)
            assert config.multitask.k == (row.k or config.multitask.k)
            teachers = config.distillation.teachers
            if row.teachers:
                expected = SCALES[scale].ensemble if TEACHER_SETS[row.teachers][1] else 1
                assert len(teachers) == expected, (table, row)
                assert config.distillation.mode == ("offline" if row.kd == "logits" else "online")
                assert config.distillation.hidden_loss == KD_FORMS[row.kd].get("hidden_loss", "none")
            else:
                assert teachers == ()
    for name, spec in experiments.TEACHERS.items():
        config = built.config(spec.size, 0, SCALES[scale].teacher_steps, spec.k)
        assert config.train.steps == SCALES[scale].teacher_steps


CUT_SMALL = dataclasses.replace(SCALES["small"], student_from_large=not SCALES["small"].student_from_large)


@pytest.mark.parametrize("scale", [*SCALES.values(), CUT_SMALL], ids=[*SCALES, "small-flipped"])
def test_students_of_multitask_rows_start_from_the_large_model_where_the_scale_says(scale, fake_teachers, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setattr(Experiments, "run", lambda self, role, config: (tmp_path / role, config))
    built = Experiments(scale, tmp_path)
    for row in TABLES["task_passes"]:
        _, config = built.student(row, 0)
        if row.k and scale.student_from_large:
            assert config.multitask.steps == 0
            assert config.model.pretrained == str(tmp_path / f"large-k{row.k}-0")
            assert config.model.pretrained_layers == tuple(scale.base["pretrained_layers"])
        else:
            assert config.multitask.steps == (scale.multitask["steps"] if row.k else 0)
            assert config.model.pretrained == scale.base.get("pretrained", "none")


def test_a_student_starts_from_the_large_model_of_its_table_end_to_end(tmp_path):
    """A tiny scale whose student is the whole 2-layer large model: the `final` table's ROaD row
    starts from the k=4 large run (which is also its teacher) instead of a stage of its own."""
    tiny = SCALES["tiny"]
    scale = dataclasses.replace(tiny, base=tiny.large, student_from_large=True)
    (row, [(road_dir, metrics)]), = experiments.run_table("final", Experiments(scale, tmp_path), 1, ("road",))
    road = load_config(road_dir / "config.yaml")
    teacher = road.distillation.teachers[0].run
    assert road.model.pretrained == teacher and road.multitask.steps == 0 and "multitask" not in metrics["stages"]
    assert load_config(pathlib.Path(teacher) / "config.yaml").multitask.k == 4 and row.k == 4


def test_the_tables_have_the_rows_of_the_write_up():
    assert [r.name for r in TABLES["task_passes"]] == ["no_multitask", "k1", "k2", "k4", "k8"]
    assert [r.k for r in TABLES["task_passes"]] == [0, 1, 2, 4, 8]
    assert [r.name for r in TABLES["kd_form"]] == list(KD_FORMS)
    final = {r.name: r for r in TABLES["final"]}
    assert final["road"].k == 4 and final["road"].teachers == "road_large" and final["road"].kd == "logits"
    assert final["baseline"].teachers == "" and final["baseline"].k == 0
    assert experiments.TEACHERS["road_large"].k == 4 and experiments.TEACHERS["large"].k == 0


def test_each_hidden_form_is_measured_with_random_and_identity_projections(fake_teachers, tmp_path):
    built = Experiments(SCALES["small"], tmp_path)
    names = [r.name for r in TABLES["kd_form"]]
    hidden = [name for name in names if name != "logits" and not name.endswith("_identity")]
    assert hidden == ["hidden_all", "hidden_last", "logits_hidden_all", "logits_hidden_last"]
    assert names == ["logits", *hidden, *(f"{name}_identity" for name in hidden)]
    for name in hidden:
        random_start = built.config("base", 0, 10, 0, built.distillation("road_large", name))
        identity = built.config("base", 0, 10, 0, built.distillation("road_large", f"{name}_identity"))
        assert (random_start.distillation.projection_init, identity.distillation.projection_init) == ("random",
                                                                                                     "identity")
        same = dataclasses.replace(identity, distillation=dataclasses.replace(identity.distillation,
                                                                               projection_init="random"))
        assert same == random_start, name


def test_the_minilm_recipe_trains_as_the_small_road_large_teacher_from_its_squad1_stage(tmp_path):
    """The README compares configs/squad2_minilm.yaml with that teacher's runs: the same training, but
    from the encoder squad1_minilm fine-tuned on SQuAD 1.1 instead of the MiniLM as pre-trained."""
    teacher = Experiments(SCALES["small"], tmp_path).config("large", 0, SCALES["small"].teacher_steps, k=4)
    recipe = load_config(resolve_recipe("squad2_minilm"), [f"data.cache_dir={tmp_path / 'cache'}"])
    assert (teacher.model.pretrained, recipe.model.pretrained) == ("minilm", "runs/squad1_minilm")
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, pretrained="minilm"))
    for section in ("model", "data", "multitask", "train", "decode"):
        assert to_dict(getattr(recipe, section)) == to_dict(getattr(teacher, section)), section
    assert recipe.task == teacher.task and recipe.distillation.teachers == teacher.distillation.teachers == ()
    assert recipe.export.null_threshold == teacher.export.null_threshold == "best"


def test_final_rows_are_exported_again_when_their_run_changes(tmp_path, monkeypatch):
    """A version from another run (e.g. before the scale changed) is replaced; one from this run is kept."""
    exported = []
    monkeypatch.setattr(experiments.export, "export_run", lambda run_dir, name, base: exported.append((name, run_dir)))
    old, new = tmp_path / "runs" / "student-old", tmp_path / "runs" / "student-new"
    for name, run in (("baseline_seed0", old), ("road_seed0", new)):
        (tmp_path / "saved_models" / name / "1").mkdir(parents=True)
        (tmp_path / "saved_models" / name / "1" / "road_tf_source.json").write_text(json.dumps({"run": str(run)}))
    rows = TABLES["final"]
    results = [(rows[0], [(new, {})]), (rows[1], [(new, {}), (tmp_path / "runs" / "student-2", {})])]
    experiments.export_rows("final", results, tmp_path)
    assert exported == [("baseline_seed0", new), ("road_seed1", tmp_path / "runs" / "student-2")]
    experiments.export_rows("kd_form", results, tmp_path)
    assert len(exported) == 2


def test_a_row_folder_that_is_a_file_is_named_before_exporting(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments.export, "export_run", lambda *args: pytest.fail("exported"))
    (tmp_path / "saved_models").mkdir()
    (tmp_path / "saved_models" / "baseline_seed0").write_text("x")
    with pytest.raises(RoadError, match=f"^{tmp_path}/saved_models/baseline_seed0 is a file, not a folder; move it"):
        experiments.export_rows("final", [(TABLES["final"][0], [(tmp_path / "run", {})])], tmp_path)


def _fake_run(folder, f1, minutes, held_out=True):
    folder.mkdir(parents=True)
    final = {"task": "squad2", "split": "dev", "exact": f1 - 1, "f1": f1, "HasAns_f1": f1 / 2, "NoAns_f1": 90.0,
             "tuned_f1": f1 + 1, "total": 200, "NoAns_total": 104}
    if held_out:
        final["held_out_tuned_f1"] = f1 - 3
    (folder / run_clock.TIME_FILE).write_text(json.dumps({"minutes": minutes}))
    return folder, {"final": final}


def test_a_table_is_written_as_markdown_csv_and_png(tmp_path):
    rows = TABLES["final"]
    results = [(rows[0], [_fake_run(tmp_path / "a0", 50.0, 2.0), _fake_run(tmp_path / "a1", 60.0, 4.0)]),
               (rows[1], [_fake_run(tmp_path / "b0", 70.0, 3.0, held_out=False),
                          _fake_run(tmp_path / "b1", 70.0, 3.0, held_out=False)])]
    summary = experiments.summarise("final", results)
    assert summary[0]["F1"] == 55.0 and summary[0]["F1 std"] == pytest.approx(math.sqrt(50.0))
    assert summary[0]["minutes"] == 3.0 and summary[1]["F1 std"] == 0.0
    assert summary[0]["no_answer_f1"] == 52.0 and summary[1]["road_f1"] == 87.6
    experiments.write_table("final", "tiny", summary, tmp_path / "out", "python -m road_tf.experiments final")
    with open(tmp_path / "out" / "final.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["row"] for r in table] == ["baseline", "road"]
    assert float(table[0]["F1"]) == 55.0 and float(table[0]["EM"]) == 54.0 and table[0]["road_f1"] == "83.3000"
    assert float(table[0]["held-out F1"]) == 52.0 and table[1]["held-out F1"] == ""
    markdown = (tmp_path / "out" / "final.md").read_text()
    assert "| baseline | 54.00 ± 7.07 | 55.00 ± 7.07 |" in markdown and "F1 52.00" in markdown
    assert "| held-out F1 |" in markdown and "| 56.00 ± 7.07 | 52.00 ± 7.07 | 2 |" in markdown
    assert "| 71.00 ± 0.00 | - | 2 |" in markdown, "runs without held_out_tuned_f1 show -"
    assert (tmp_path / "out" / "final.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fixed null threshold 0" in markdown
    assert "12.0 for all the rows' runs" in markdown, "the table's total: each row's minutes per seed × its seeds"
    one_seed = experiments.summarise("final", [(rows[0], [_fake_run(tmp_path / "c0", 58.0, 5.0)])])
    assert math.isnan(one_seed[0]["F1 std"]), "one seed has no measured spread"
    experiments.write_table("final", "tiny", one_seed, tmp_path / "one", "cmd")
    assert "| baseline | 57.00 | 58.00 | 29.00 | 90.00 | 59.00 | 55.00 | 1 | 5.0 | 83.3 |" in (
        tmp_path / "one" / "final.md").read_text()
    assert next(csv.DictReader((tmp_path / "one" / "final.csv").read_text().splitlines()))["F1 std"] == ""
    no_road = experiments.summarise("kd_form", [(TABLES["kd_form"][0], [_fake_run(tmp_path / "d0", 58.0, 5.0)])])
    assert no_road[0]["road_f1"] is None, "ROaD gives no F1 for kd_form's rows: one panel"
    experiments.write_table("kd_form", "tiny", no_road, tmp_path / "one", "cmd")
    assert (tmp_path / "one" / "kd_form.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "served no-answer threshold, tuned" in experiments.table_markdown("final", "small", summary, "cmd")


@pytest.mark.parametrize("args, message", [
    (["no_table", "--scale", "tiny"], "invalid choice: 'no_table'"),
    (["final", "--scale", "huge"], "invalid choice: 'huge'"),
    (["final", "--scale", "tiny", "--seeds", "0"], "argument --seeds: must be a whole number in [1, 100], got '0'"),
    (["final"], "--scale"),
    (["final", "--scale", "tiny", "--rows", "baseline,roda"], "--rows: final has no row 'roda' (rows: baseline, road)"),
    (["final", "--scale", "tiny", "--rows", ""], "--rows: final has no row ''"),
    (["final", "--scale", "tiny", "--rows", "road,baseline,road"], "--rows: names 'road' twice"),
    (["all", "--scale", "tiny", "--rows", "road"], "--rows: needs one TABLE, not all"),
])
def test_bad_arguments_fail_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit, match="2"):
        experiments.main(args)
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_output_that_cannot_be_a_folder_fails_before_any_run(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="2"):
        experiments.main(["final", "--scale", "tiny", "--output", str(tmp_path / "file" / "out")])
    err = capsys.readouterr().err
    assert f"--output {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_rows_runs_only_the_named_rows_in_table_order(tmp_path):
    trained = []

    class Recording(Experiments):
        def student(self, row, seed):
            trained.append((row.name, seed))
            return tmp_path / row.name, {}

    results = experiments.run_table("teacher_choice", Recording(SCALES["tiny"], tmp_path), 2, ("large", "no_kd"))
    assert [row.name for row, _ in results] == ["no_kd", "large"]
    assert trained == [("no_kd", 0), ("no_kd", 1), ("large", 0), ("large", 1)]


@pytest.mark.slow
def test_every_table_runs_at_the_tiny_scale_and_resumes(tmp_path, capsys):
    assert experiments.main(["all", "--scale", "tiny", "--output", str(tmp_path)]) == 0
    assert "trained student run" in capsys.readouterr().out
    for table, rows in TABLES.items():
        with open(tmp_path / f"{table}.csv") as handle:
            written = list(csv.DictReader(handle))
        assert [r["row"] for r in written] == [row.name for row in rows], table
        assert all(0.0 <= float(r["F1"]) <= 100.0 for r in written)
        assert (tmp_path / f"{table}.png").stat().st_size > 1000
        assert f"# {table} (tiny scale)" in (tmp_path / f"{table}.md").read_text()
    assert {int(r["seeds"]) for r in csv.DictReader(open(tmp_path / "final.csv"))} == {3}
    assert sorted(p.name for p in (tmp_path / "saved_models").iterdir()) == [
        f"{row}_seed{seed}" for row in ("baseline", "road") for seed in range(3)]
    assert experiments.main(["final", "--scale", "tiny", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trained" not in out and "reused student run" in out
    assert all([v.name for v in folder.iterdir()] == ["1"] for folder in (tmp_path / "saved_models").iterdir())


@pytest.mark.parametrize("final", [{"task": "squad2"}, {"task": "squad2", "total": 0, "NoAns_total": 0},
                                   {"task": "squad2", "total": 10, "NoAns_total": 11}])
def test_a_run_without_a_dev_split_is_named_in_the_summary(tmp_path, final):
    run, _ = _fake_run(tmp_path / "a0", 50.0, 2.0)
    with pytest.raises(RoadError, match=f"^{run}/metrics.json: its final metrics lack a SQuAD 2.0 dev split"):
        experiments.summarise("final", [(TABLES["final"][0], [(run, {"final": final, "stages": {}, "export": None})])])


def test_every_spelling_of_an_output_folder_names_the_same_runs(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "work" / "deeper").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "out")
    monkeypatch.chdir(tmp_path / "work" / "deeper")
    spellings = [tmp_path / "out", "../../out", tmp_path / "link", f"{tmp_path}/work/../out/"]
    built = [Experiments(SCALES["tiny"], spelling) for spelling in spellings]
    assert {e.output for e in built} == {(tmp_path / "out").resolve()}
    assert len({config_digest(e.config("base", 0, 20), 12) for e in built}) == 1


@pytest.fixture
def fake_cache(monkeypatch, tmp_path):
    """cached_logits without teacher runs: each teacher's checkpoint is tmp_path/teacher.weights.h5,
    the cache written from a small array by hand with that teacher's record (the number of builds
    counted)."""
    builds = []
    weights = tmp_path / "teacher.weights.h5"
    weights.write_bytes(b"teacher weights")

    def resolve(config):
        teachers = tuple(dataclasses.replace(t, checkpoint=str(weights), run="") for t in config.distillation.teachers)
        return dataclasses.replace(config, distillation=dataclasses.replace(config.distillation, teachers=teachers))

    def build(config, path):
        builds.append(path)
        features.write_feature_cache(path, {"a": np.arange(50)}, teacher_notes(config.distillation.teachers))

    monkeypatch.setattr(experiments, "resolve_teacher_runs", resolve)
    monkeypatch.setattr(experiments.cache_teacher, "cache_teacher_logits", build)
    return builds


def test_a_damaged_or_outdated_teacher_logits_cache_is_written_again(tmp_path, fake_cache):
    built = Experiments(SCALES["tiny"], tmp_path)
    section = {"teachers": [{"run": str(tmp_path / "teacher")}]}
    path = built.cached_logits(section)
    assert built.cached_logits(section) == path and len(fake_cache) == 1, "a sound cache is reused"
    (tmp_path / "teacher.weights.h5").write_bytes(b"the teacher trained again")
    assert built.cached_logits(section) == path and len(fake_cache) == 2, "a cache of other weights is written again"
    path.write_bytes(path.read_bytes()[:-5])
    assert built.cached_logits(section) == path and len(fake_cache) == 3
    path.with_suffix(".json").write_text("{")
    built.cached_logits(section)
    assert len(fake_cache) == 4 and features.verify_feature_cache(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(features.DataError, match=f"^{path}: is a folder, where a feature cache file goes"):
        built.cached_logits(section)


@pytest.mark.parametrize("folder", experiments.OUTPUT_FOLDERS)
@pytest.mark.parametrize("thing", ["file", "broken link"])
def test_a_file_where_the_output_needs_a_folder_names_output(tmp_path, capsys, folder, thing):
    blocked = tmp_path / folder
    blocked.parent.mkdir(parents=True, exist_ok=True)
    if thing == "file":
        blocked.write_text("x")
    else:
        blocked.symlink_to(tmp_path / "nowhere")
    kind = "a file" if thing == "file" else "a broken symbolic link"
    assert final_tiny_error(capsys, tmp_path) == (f"error: --output {tmp_path}: {blocked} is {kind}, not a folder; "
                                                  "move it away or choose another --output")


def test_an_output_whose_name_is_not_utf8_is_refused_naming_output(tmp_path, capsys):
    line = final_tiny_error(capsys, os.fsdecode(bytes(tmp_path) + b"/r\xe9sults"))
    assert line.startswith("error: --output '") and ": not UTF-8 text (byte 0x" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("record", ["scale.json", "final.md"])
def test_an_output_of_another_scale_is_refused(tmp_path, capsys, record):
    if record == "scale.json":
        (tmp_path / experiments.SCALE_FILE).write_text('{"scale": "small"}')
    else:  # a folder from before scale.json: its tables' headings say the scale
        (tmp_path / "final.md").write_text("# final (small scale)\n")
    assert final_tiny_error(capsys, tmp_path) == (
        f"error: --output {tmp_path}: holds the small scale's runs and tables ({record}), which --scale tiny "
        "would overwrite; choose another --output")
    assert sorted(p.name for p in tmp_path.iterdir()) == [record]


def test_the_scale_of_an_output_is_recorded_once(tmp_path):
    experiments.check_scale(tmp_path, "tiny")
    experiments.check_scale(tmp_path, "tiny")
    assert json.loads((tmp_path / experiments.SCALE_FILE).read_text()) == {"scale": "tiny"}
    (tmp_path / experiments.SCALE_FILE).write_text('{"scale": "huge"}')
    with pytest.raises(RoadError, match="scale.json: not a scale record"):
        experiments.check_scale(tmp_path, "tiny")


class Trained(Exception):
    """Raised in place of training the first row: the command got past its checks."""


@pytest.fixture
def no_training(monkeypatch):
    """Experiments.student raising Trained, so a command that passes its checks stops there."""
    monkeypatch.setattr(Experiments, "student", lambda self, row, seed: (_ for _ in ()).throw(Trained(row.name)))


def test_a_folder_of_other_files_is_refused_as_output_before_anything_is_written(tmp_path, capsys, no_training):
    """The runs, caches and tables would be scattered among the files (a home folder, the repository),
    and a final.md that is no table of ours overwritten."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "final.md").write_text("# my own notes\n")
    (tmp_path / ".hidden").write_text("ignored")
    assert final_tiny_error(capsys, tmp_path) == (
        f"error: --output {tmp_path}: a folder holding other files (final.md, notes.txt), not "
        "road_tf.experiments' tables (no scale.json or TABLE.md); choose a new or empty folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "final.md", "notes.txt"]
    (tmp_path / "final.md").write_text("# final (tiny scale)\n")  # a folder of tables from before scale.json
    with pytest.raises(Trained):
        experiments.main(["final", "--scale", "tiny", "--output", str(tmp_path)])


@pytest.fixture
def fifo():
    """make(path, text): a named pipe at `path` that a thread feeds `text` once a reader opens it
    (so code that reads it gets `text` instead of waiting for ever); the thread is let go at the end."""
    made = []

    def feed(path, text):
        try:
            pathlib.Path(path).write_text(text)
        except BrokenPipeError:  # let go unread
            pass

    def make(path, text):
        os.mkfifo(path)
        feeder = threading.Thread(target=feed, args=(path, text), daemon=True)
        feeder.start()
        made.append((path, feeder))

    yield make
    for path, feeder in made:
        if feeder.is_alive():  # nobody read it: open the read end so the feeder's open returns
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        feeder.join(5)


@pytest.mark.parametrize("record", ["scale.json", "final.md"])
def test_a_pipe_for_a_record_of_the_output_is_not_read(tmp_path, capsys, fifo, no_training, record):
    """Reading it would wait for a writer for ever; a device such as /dev/zero would never end."""
    fifo(tmp_path / record, '{"scale": "tiny"}\n' if record == "scale.json" else "# final (tiny scale)\n")
    line = final_tiny_error(capsys, tmp_path)
    if record == "scale.json":
        assert line == f"error: {tmp_path}/scale.json: a device or pipe, not a scale record file"
    else:
        assert line.startswith(f"error: --output {tmp_path}: a folder holding other files (final.md), not ")


def test_a_scale_record_nested_too_deeply_is_one_line(tmp_path, capsys):
    (tmp_path / experiments.SCALE_FILE).write_text("[" * 100_000 + "]" * 100_000)
    assert final_tiny_error(capsys, tmp_path).startswith(
        f"error: {tmp_path}/scale.json: not a scale record (RecursionError: ")


@pytest.mark.parametrize("folder", ["runs", "cache", "cache/features", "teacher_logits", "saved_models"])
def test_a_folder_of_the_output_that_cannot_be_written_names_output(tmp_path, capsys, folder):
    """Not --output-dir or data.cache_dir, which road_tf.train's checks would name (a folder of /proc,
    where nothing can be made, stands for a read-only one: root may write those)."""
    (tmp_path / experiments.SCALE_FILE).write_text('{"scale": "tiny"}')
    (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / folder).symlink_to("/proc/self")
    assert final_tiny_error(capsys, tmp_path, "--rows", "baseline", "--seeds", "1").startswith(
        f"error: --output {tmp_path}: {tmp_path / folder}: cannot write there (")


def test_an_output_whose_absolute_path_is_not_utf8_is_refused_naming_output(tmp_path, capsys, monkeypatch):
    """A relative --output below a folder whose name is not UTF-8: every run's config would refuse
    its data.cache_dir, a setting the user never made, after scale.json was written."""
    here = pathlib.Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    here.mkdir()
    monkeypatch.chdir(here)
    assert final_tiny_error(capsys, "out") == (
        f"error: --output out: its absolute path {str(here / 'out')!r}: not UTF-8 text (byte 0xe9 at character "
        f"{len(str(tmp_path)) + 4}); give a name in UTF-8")
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("given", ["out", "./out/", "link/out"])
def test_errors_show_output_as_it_was_given(tmp_path, capsys, monkeypatch, given):
    """Not resolved to an absolute path (which run hashes need, messages do not)."""
    (tmp_path / "real" / "out").mkdir(parents=True)
    (tmp_path / "real" / "out" / "runs").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").symlink_to(tmp_path / "real" / "out")
    shown = pathlib.Path(given)
    assert final_tiny_error(capsys, given) == (
        f"error: --output {shown}: {shown / 'runs'} is a file, not a folder; move it away or choose another --output")
    (tmp_path / "real" / "out" / "runs").unlink()
    (tmp_path / "real" / "out" / experiments.SCALE_FILE).write_text('{"scale": "small"}')
    assert final_tiny_error(capsys, given) == (
        f"error: --output {shown}: holds the small scale's runs and tables (scale.json), which --scale tiny "
        "would overwrite; choose another --output")


def test_a_damaged_run_folder_of_the_tables_is_named_with_the_remedy_that_applies_to_them(tmp_path):
    """The tables name their run folders by their config's hash: a damaged one's message said "choose
    another --output-dir" and "give the settings it was started with", which the command has not."""
    config = config_from_dict({"export": {"enabled": False}, "data": {"cache_dir": str(tmp_path / "cache")}})
    other = config_from_dict({"export": {"enabled": False}, "data": {"cache_dir": str(tmp_path / "cache")},
                              "train": {"steps": 5}})
    run = tmp_path / "runs" / "student-0123"
    run.mkdir(parents=True)
    remedy = "; delete the run folder to train that run again"
    for config_yaml, metrics, message in (
            (dump_yaml(other), None, f"run folder {run}: holds a run of another configuration (it differs in train.steps)"),
            ("x: [", None, f"run folder {run}: not a road_tf run's config.yaml ("),
            (dump_yaml(config), '{"final": 1}', f"{run / 'metrics.json'}: not the metrics.json of a finished road_tf run")):
        (run / "config.yaml").write_text(config_yaml)
        if metrics:
            (run / "metrics.json").write_text(metrics)
        with pytest.raises(RoadError) as error:
            train.train_run(config, run, experiments.RUN_FOLDER)
        assert str(error.value).startswith(message) and str(error.value).endswith(remedy)
        assert "--output-dir" not in str(error.value)


def test_an_output_that_goes_up_out_of_a_missing_folder_is_refused(tmp_path, capsys, monkeypatch, no_training):
    """`missing/..` is nothing to the system, so the checks of what the folder holds found nothing,
    while the runs and scale.json went into the folder it names as text: another scale's record
    there was overwritten and the table started."""
    (tmp_path / experiments.SCALE_FILE).write_text('{"scale": "small"}')
    monkeypatch.chdir(tmp_path)
    assert final_tiny_error(capsys, "missing/..") == (
        "error: --output missing/..: goes up ('..') out of missing, which does not exist; name the folder without '..'")
    assert sorted(p.name for p in tmp_path.iterdir()) == [experiments.SCALE_FILE]
    assert (tmp_path / experiments.SCALE_FILE).read_text() == '{"scale": "small"}'
