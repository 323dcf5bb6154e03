"""python -m pipelines.local_runner: run the pipeline locally on the embedded synthetic corpus.

Paths live here only. Data: the synthetic SQuAD-2.0 corpus written as tf.Example TFRecords;
pipeline state under runs/tfx/; blessed models pushed to saved_models/road_tfx/<version>/.
"""

import argparse
import pathlib
import sys

from pipelines import configs

REPO = pathlib.Path(__file__).resolve().parent.parent


def prepare_data(data_root, seed=0, train_size=1200, dev_size=200):
    """Writes the synthetic corpus's SQuAD splits as tf.Example TFRecords for ImportExampleGen."""
    from road_tf.data import synthetic
    from road_tf.data.records import write_records
    from road_tf.data.squad import read_squad_json

    paths = synthetic.generate(data_root / "synthetic", seed=seed, train_size=train_size, dev_size=dev_size)
    for split, key in (("train", "train"), ("eval", "dev")):
        folder = data_root / "examples" / f"Split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        write_records(folder / "data.tfrecord", read_squad_json(paths["squad"][key]))
    return data_root / "examples"


def run(root, serving_model_dir, min_f1=configs.MIN_DEV_F1, overrides=configs.TRAINER_OVERRIDES, **data_sizes):
    """Prepares data and runs the whole pipeline with LocalDagRunner."""
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline

    root = pathlib.Path(root)
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=str(root / "pipeline"),
        data_root=str(prepare_data(root / "data", **data_sizes)),
        serving_model_dir=str(serving_model_dir),
        metadata_path=str(root / "metadata.db"),
        min_f1=min_f1,
        trainer_overrides=overrides,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pipelines.local_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "runs" / "tfx"), help="pipeline state and data")
    parser.add_argument("--serving-model-dir", default=str(REPO / "saved_models" / configs.MODEL_NAME))
    parser.add_argument("--min-f1", type=float, default=configs.MIN_DEV_F1)
    parser.add_argument("--set", dest="overrides", action="append", default=list(configs.TRAINER_OVERRIDES),
                        metavar="KEY=VALUE", help="road_tf override for the Trainer (repeatable)")
    args = parser.parse_args(argv)
    run(args.root, args.serving_model_dir, args.min_f1, tuple(args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
