"""TFX Trainer module: `run_fn` hands the ExampleGen splits to road_tf and saves the student.

The run directory (config.yaml, metrics.json, stage checkpoints) is the Trainer's ModelRun
artifact, which the evaluation gate reads; the raw-text SavedModel is its Model artifact. Under
train.strategy=multi_worker every worker runs this function and only the chief writes them.
"""

import pathlib
import tempfile

from pipelines.configs import trainer_config
from road_tf import cluster
from road_tf.data.records import read_records
from road_tf.data.squad import write_squad_json
from road_tf.experiment import run_and_record
from road_tf.export import load_run_student, run_final_metrics
from road_tf.saved_model import save_qa_model


def run_fn(fn_args):
    """Trains on the train split, scores on the eval split, saves to `serving_model_dir`.

    custom_config: {"config_yaml": the resolved run configuration, "inputs_stamp": for the cache
    only}; the configuration's data source is replaced by the two splits (written as SQuAD JSON in a
    private temporary folder, with the feature cache), and the whole eval split is scored (the gate
    compares with the no-answer F1 of all of it).
    """
    run_dir = pathlib.Path(fn_args.model_run_dir)
    with tempfile.TemporaryDirectory(prefix="road_tfx-") as scratch:
        scratch = pathlib.Path(scratch)
        write_squad_json(scratch / "train.json", read_records(fn_args.train_files))
        write_squad_json(scratch / "dev.json", read_records(fn_args.eval_files))
        config = trainer_config(fn_args.custom_config["config_yaml"], scratch)
        run_and_record(config, run_dir)
    if cluster.is_chief(config.train):
        final = run_final_metrics(run_dir)
        config, task, tokenizer, model = load_run_student(run_dir)
        save_qa_model(model, task, tokenizer, config, fn_args.serving_model_dir, final.get("null_score_diff_threshold"),
                      final)
