"""TFX Trainer module: `run_fn` hands the ExampleGen splits to road_tf and saves the student.

The run directory (config.yaml, metrics.json, stage checkpoints) is the Trainer's ModelRun
artifact, which the evaluation gate reads; the raw-text SavedModel is its Model artifact.
"""

import pathlib

from road_tf.config import load_config
from road_tf.data.records import read_records
from road_tf.data.squad import write_squad_json
from road_tf.experiment import run_and_record
from road_tf.export import load_run_student, run_final_metrics
from road_tf.saved_model import save_qa_model


def run_fn(fn_args):
    """Trains on the train split, scores on the eval split, saves to `serving_model_dir`.

    custom_config: {"overrides": ["a.b=c", ...]}, road_tf `--set` pairs.
    """
    run_dir = pathlib.Path(fn_args.model_run_dir)
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_squad_json(data / "train.json", read_records(fn_args.train_files))
    write_squad_json(data / "dev.json", read_records(fn_args.eval_files))
    overrides = list((fn_args.custom_config or {}).get("overrides", ()))
    overrides += ["data.source=json", f"data.train_path={data / 'train.json'}", f"data.dev_path={data / 'dev.json'}",
                  "export.enabled=false", f"data.cache_dir={run_dir / 'cache'}"]
    run_and_record(load_config(None, overrides), run_dir)
    config, task, tokenizer, model = load_run_student(run_dir)
    final = run_final_metrics(run_dir)
    save_qa_model(model, task, tokenizer, config, fn_args.serving_model_dir, final.get("null_score_diff_threshold"),
                  final)
