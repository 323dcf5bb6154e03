"""`package:NAME` data files (road_tf/data/packaged.py): read like local files, refused clearly when
unknown or not installed; SQuAD 1.1's training set as `make setup` installs it, and its articles
apart from SQuAD 2.0 dev's."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import shared_file
from pipelines import local_runner
from road_tf.config import load_config, resolve_recipe, train_first
from road_tf import packaged
from road_tf.data.json_files import read_json, read_text
from road_tf.data.squad import read_squad_json
from road_tf.errors import ConfigError, DataError, RoadError
from road_tf.files import check_distinct, check_writable_file

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_SQUAD1 = {"version": "1.1", "data": [{"title": "T", "paragraphs": [
    {"context": "Rollo led the Normans.", "qas": [
        {"id": "a", "question": "Who led?", "answers": [{"text": "Rollo", "answer_start": 0}]},
        {"id": "b", "question": "Whom did he lead?", "answers": [{"text": "the Normans", "answer_start": 10}]}]}]}]}


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package `road_tf_fake_data` holding support/train.json (TINY_SQUAD1), offered as
    package:fake; returns the file."""
    folder = tmp_path / "site" / "road_tf_fake_data"
    (folder / "support").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "support" / "train.json").write_text(json.dumps(TINY_SQUAD1))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(packaged.FILES, "fake", ("road_tf_fake_data", "support/train.json", "road-tf-fake==1"))
    return folder / "support" / "train.json"


def test_a_packaged_file_is_read_like_a_local_one(fake_package):
    examples = read_squad_json("package:fake")
    assert [(e.qid, e.answers[0].text) for e in examples] == [("a", "Rollo"), ("b", "the Normans")]
    assert packaged.local_path("package:fake") == fake_package
    assert packaged.local_path("train.json") == "train.json"


def test_a_bad_record_in_a_packaged_file_is_named_as_the_user_named_the_file(fake_package):
    broken = json.loads(json.dumps(TINY_SQUAD1))
    broken["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = "ten"
    fake_package.write_text(json.dumps(broken))
    with pytest.raises(DataError) as error:
        read_squad_json("package:fake")
    assert str(error.value).startswith("package:fake") and "answer_start" in str(error.value)


UNKNOWN = ("'package:nope': no packaged data file of that name (known: package:squad1.1-train); give a local "
           "file so named by its absolute path")


def test_an_unknown_name_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError) as error:
        read_text("package:nope")
    assert str(error.value) == UNKNOWN
    with pytest.raises(ConfigError) as error:
        read_text("package:" + "n" * 5000)
    assert len(str(error.value)) < 250


def test_a_path_in_a_folder_named_like_a_package_stays_a_path(tmp_path, monkeypatch):
    """Only a whole `package:NAME` is a packaged name: a run folder or cache folder called
    `package:...` holds ordinary files (the reader refused them as unknown packaged names)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "package:runs").mkdir()
    (tmp_path / "package:runs" / "train.json").write_text(json.dumps(TINY_SQUAD1))
    assert len(read_squad_json("package:runs/train.json")) == 2
    assert packaged.local_path("package:runs/train.json") == "package:runs/train.json"
    (tmp_path / "package:nope").write_text(json.dumps(TINY_SQUAD1))
    assert len(read_squad_json(tmp_path / "package:nope")) == 2


def test_a_packaged_name_is_never_an_output():
    with pytest.raises(RoadError, match=r"^--output package:squad1.1-train: names a data file a package ships, "
                                        r"which is read, not written"):
        check_writable_file("package:squad1.1-train", "--output")


def test_an_output_over_the_installed_file_a_packaged_name_reads_is_refused():
    """`predict --data package:squad1.1-train --output <the installed file>` would have replaced SQuAD 1.1's
    training set; a gate scored on the installed file it trained on (as package:...) would bless itself."""
    installed = str(packaged.local_path("package:squad1.1-train"))
    with pytest.raises(RoadError, match="is the --data file, which it would overwrite"):
        check_distinct({"--output": installed}, {"--data": "package:squad1.1-train"})
    with pytest.raises(RoadError, match="is the --data file; the gate would score the model on the questions"):
        local_runner.check_held_out("package:squad1.1-train", installed)
    local_runner.check_held_out("package:squad1.1-train", "dev.json")


def test_a_package_not_installed_names_its_requirement(monkeypatch):
    monkeypatch.setitem(packaged.FILES, "gone", ("road_tf_no_such_package", "x.json", "road-tf-gone==2"))
    with pytest.raises(ConfigError, match="the package road_tf_no_such_package is not installed; install "
                                          "road-tf-gone==2 with --no-deps"):
        read_text("package:gone")


def test_a_package_without_the_file_is_refused(fake_package):
    fake_package.unlink()
    with pytest.raises(ConfigError, match="package:fake: the installed package road_tf_fake_data has no "
                                          "support/train.json; reinstall road-tf-fake==1"):
        read_json("package:fake")


def test_a_command_given_an_unknown_packaged_file_stops_with_one_line(tmp_path):
    predictions = tmp_path / "p.json"
    predictions.write_text("{}")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "road_tf.evaluate", "squad2", "package:nope", str(predictions)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {UNKNOWN}"]


def test_make_setup_installs_squad1_train_and_not_its_dev_set():
    """The file behind package:squad1.1-train: SQuAD 1.1's training set, every question answerable; the
    package's SQuAD 1.1 dev set (SQuAD 2.0 dev's answerable questions) is removed by make setup."""
    data = read_json("package:squad1.1-train")
    questions = [qa for article in data["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    assert (data["version"], len(data["data"]), len(questions)) == ("1.1", 442, 87_599)
    assert all(qa["answers"] for qa in questions)
    assert not (packaged.local_path("package:squad1.1-train").parent / "dev-v1.1.json").exists()


def test_squad1_train_shares_no_article_or_context_with_squad2_dev():
    """What the recipe's held-out score rests on: stage one never read a dev article's text."""
    dev = json.loads(gzip.decompress(shared_file("data/squad2-dev/squad2-dev-public.json.gz").read_bytes()))
    train = read_json("package:squad1.1-train")

    def titles_and_contexts(data):
        return ({article["title"] for article in data["data"]},
                {paragraph["context"].strip() for article in data["data"] for paragraph in article["paragraphs"]})

    (train_titles, train_contexts), (dev_titles, dev_contexts) = titles_and_contexts(train), titles_and_contexts(dev)
    assert len(dev_titles) == 18 and not train_titles & dev_titles and not train_contexts & dev_contexts


def test_squad2_minilm_fine_tunes_the_run_squad1_minilm_trains(tmp_path):
    """The two recipes chain: the folder squad2_minilm reads is the one squad1_minilm's comment trains
    into, and a missing one is named with the command that makes it."""
    first = load_config(resolve_recipe("squad1_minilm"))
    second = load_config(resolve_recipe("squad2_minilm"))
    assert (first.model.pretrained, first.data.train_path) == ("minilm", "package:squad1.1-train")
    assert second.model.pretrained == "runs/squad1_minilm"
    command = "python -m road_tf.train --config squad1_minilm --output-dir runs/squad1_minilm"
    assert command in resolve_recipe("squad1_minilm").read_text()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "road_tf.train", "--config", "squad2_minilm", "--output-dir", "run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: model.pretrained runs/squad1_minilm: no such checkpoint folder or run directory; train it first: "
        f"{command}")


def test_the_train_first_hint_is_for_a_missing_runs_folder_named_as_a_recipe(tmp_path):
    spaced = tmp_path / "my runs" / "runs" / "squad1_minilm"
    assert train_first(spaced) == (f"; train it first: python -m road_tf.train --config squad1_minilm "
                                   f"--output-dir '{spaced}'")
    spaced.parent.mkdir(parents=True)
    spaced.write_text("")
    assert train_first(spaced) == ""
    assert train_first(tmp_path / "runs" / "not_a_recipe") == "" == train_first(tmp_path / "road_large")
