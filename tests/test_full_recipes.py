"""ROaD's real-scale recipes: road_large (ELECTRA-Large, k=4, no KD) and road_base (ELECTRA-Base,
k=4, logits KD from road_large's run), checked as configs and as a chained dry run in which every
stage is built and trained for two steps at tiny stand-in sizes (slow: about 3 minutes)."""

import json
import shutil

import pytest

from road_tf import train
from road_tf.config import load_config, resolve_recipe, resolve_teacher_runs

# Tiny stand-ins for the real sizes, data and hardware; everything else is the recipes' own.
STAND_INS = ["model.pretrained=none", "model.num_layers=2", "model.hidden_dim=32", "model.num_heads=2",
             "model.intermediate_dim=64", "data.source=synthetic", "data.synthetic_train_size=48",
             "data.synthetic_dev_size=12", "data.max_seq_length=64", "data.doc_stride=32", "data.max_query_length=16",
             "multitask.tasks=[squad2, synthetic_nli, synthetic_para, synthetic_sentiment]", "multitask.steps=2",
             "multitask.batch_size=8", "train.steps=2", "train.batch_size=8", "train.strategy=default",
             "train.mixed_precision=float32", "train.checkpoint_every=2"]


def test_the_recipes_are_roads_configuration():
    large, base = load_config(resolve_recipe("road_large")), load_config(resolve_recipe("road_base"))
    for config, preset in ((large, "electra_large_discriminator_uncased_en"),
                           (base, "electra_base_discriminator_uncased_en")):
        assert config.model.preset == preset
        assert (config.multitask.k, config.multitask.steps, config.multitask.batch_size) == (4, 40000, 512)
        assert config.multitask.tasks == ("squad2", "mnli", "qqp", "sentiment")
        assert config.data.source == "tfds"
    assert large.distillation.teachers == ()
    assert [t.run for t in base.distillation.teachers] == ["runs/road_large"]
    assert base.distillation.kd_weight == 0.5 and base.distillation.hidden_loss == "none"


def _args(recipe):
    args = ["--config", recipe, "--output-dir", f"runs/{recipe}"]
    for pair in STAND_INS:
        args += ["--set", pair]
    return args


@pytest.mark.slow
def test_road_base_names_road_large_s_run_and_needs_it_finished(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="2"):
        train.main(_args("road_base"))
    assert "distillation.teachers[0].run: runs/road_large is not a road_tf run directory" in capsys.readouterr().err
    (tmp_path / "runs/road_large").mkdir(parents=True)
    (tmp_path / "runs/road_large/config.yaml").write_text("task: squad2\n")
    with pytest.raises(SystemExit, match="2"):
        train.main(_args("road_base"))
    assert "the run runs/road_large has not finished" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "road_base").exists()
    shutil.rmtree(tmp_path / "runs/road_large")  # a stand-in, which road_large would refuse to resume

    assert train.main(_args("road_large")) == 0
    large = json.loads((tmp_path / "runs/road_large/metrics.json").read_text())
    assert set(large["stages"]) == {"multitask", "student"}
    assert large["stages"]["multitask"]["k"] == 4

    assert train.main(_args("road_base")) == 0
    base = json.loads((tmp_path / "runs/road_base/metrics.json").read_text())
    assert set(base["stages"]) == {"multitask", "teacher_0", "student_no_kd", "student"}
    assert base["stages"]["teacher_0"]["f1"] == pytest.approx(large["final"]["f1"], abs=1e-9)
    recorded = load_config(tmp_path / "runs/road_base/config.yaml")
    teacher = recorded.distillation.teachers[0]
    assert teacher.model.family == "electra" and teacher.model.hidden_dim == 32
    assert teacher.checkpoint == "runs/road_large/student/model.weights.h5"
    assert resolve_teacher_runs(recorded) == recorded
    assert (tmp_path / "saved_models/road_base/1/saved_model.pb").is_file()
