"""On real SQuAD 2.0: a MiniLM fine-tuned on the public half's training articles, exported, and
answered again through `road_tf.predict`, gives the run's own answers and metrics (slow).

Data: `../shared/data/squad2-dev/squad2-dev-public.json.gz`, split by article with
`split_by_article` (1,157 dev questions). 200 steps of 16 windows of 256 tokens; or, with
ROAD_TF_PARITY_RUN set to a finished run directory of such a model (e.g. one of
`--config squad2_minilm`), that run is checked instead of training a new one.
"""

import gzip
import json
import os
import pathlib

import pytest

from conftest import shared_file
from road_tf import evaluate, predict, train
from road_tf.config import load_config
from road_tf.data.squad import split_by_article
from road_tf.data.sources import local_split_paths

SQUAD_DEV = "data/squad2-dev/squad2-dev-public.json.gz"
SETTINGS = ["model.pretrained=minilm", "data.source=json", "data.max_seq_length=256", "data.doc_stride=128",
            "data.max_query_length=64", "train.steps=200", "train.batch_size=16", "train.learning_rate=1e-4",
            "train.checkpoint_every=100"]


def _train(tmp_path):
    """Trains and exports the 200-step MiniLM; returns (run directory, dev file)."""
    data = json.loads(gzip.decompress(shared_file(SQUAD_DEV).read_bytes()))
    train_split, dev_split = split_by_article(data)
    train_path, dev_path = tmp_path / "train.json", tmp_path / "dev.json"
    train_path.write_text(json.dumps(train_split))
    dev_path.write_text(json.dumps(dev_split))
    out = tmp_path / "run"
    args = ["--output-dir", str(out)]
    for pair in SETTINGS + [f"data.train_path={train_path}", f"data.dev_path={dev_path}",
                            f"data.cache_dir={tmp_path / 'cache'}", f"export.base_dir={tmp_path / 'sm'}"]:
        args += ["--set", pair]
    assert train.main(args) == 0
    return out, dev_path


def _given_run():
    """(run directory, dev file) of the finished run ROAD_TF_PARITY_RUN names."""
    out = pathlib.Path(os.environ["ROAD_TF_PARITY_RUN"])
    config = load_config(out / "config.yaml")
    return out, pathlib.Path(local_split_paths(config.data)[1])


@pytest.mark.slow
def test_predict_on_an_exported_minilm_reproduces_the_run(tmp_path, capsys):
    out, dev_path = _given_run() if os.environ.get("ROAD_TF_PARITY_RUN") else _train(tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["total"] >= 1000
    preds, na = tmp_path / "preds.json", tmp_path / "na.json"
    assert predict.main(["--model", metrics["export"], "--data", str(dev_path), "--output", str(preds),
                         "--na-probs", str(na)]) == 0
    # The answers of the exported model: at the served (dev-tuned) threshold when the run exported that one.
    recorded_dir = out / "student" / "served" if (out / "student" / "served").is_dir() else out / "student"
    recorded, got = json.loads((recorded_dir / "predictions.json").read_text()), json.loads(preds.read_text())
    assert got == recorded
    recorded_na, got_na = json.loads((recorded_dir / "na_probs.json").read_text()), json.loads(na.read_text())
    assert max(abs(recorded_na[q] - got_na[q]) for q in got_na) <= 1e-5
    capsys.readouterr()
    assert evaluate.main(["squad2", str(dev_path), str(preds), "--na-probs", str(na)]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"):
        assert scored[key] == pytest.approx(metrics["final"][key], abs=1e-9), key
    print(json.dumps({key: metrics["final"][key] for key in ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1")}))
