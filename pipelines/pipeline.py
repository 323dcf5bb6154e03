"""`create_pipeline`: a pure description of the road_tf TFX pipeline (no paths of its own).

ImportExampleGen (SQuAD questions as tf.Examples, train/eval splits) -> StatisticsGen ->
SchemaGen -> ExampleValidator -> Trainer (road_tf via the module file) -> SquadF1Gate
(blesses on dev F1) -> Pusher (to a TF Serving model directory).
"""

from tfx import v1 as tfx

from pipelines.gate import SquadF1Gate


TRAINER_RUN_FN = "pipelines.modules.trainer_module.run_fn"


def create_pipeline(pipeline_name, pipeline_root, data_root, serving_model_dir, metadata_path, min_f1,
                    trainer_overrides=(), run_fn=TRAINER_RUN_FN):
    """Returns the tfx.dsl.Pipeline.

    Args:
        data_root: folder with `Split-train/` and `Split-eval/` TFRecord files of tf.Examples
            (keys in `road_tf.data.records`).
        run_fn: dotted path of the Trainer's `run_fn` (an importable module, so TFX does not
            package and pip-install a copy of a module file).
        serving_model_dir: where the Pusher writes `<version>/` folders for TF Serving.
        min_f1: the gate's dev-F1 threshold in %.
        trainer_overrides: road_tf `--set` pairs for the Trainer.
    """
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="train", pattern="Split-train/*"),
            tfx.proto.Input.Split(name="eval", pattern="Split-eval/*"),
        ]),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    trainer = tfx.components.Trainer(
        run_fn=run_fn,
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"overrides": list(trainer_overrides)},
    )
    gate = SquadF1Gate(model=trainer.outputs["model"], model_run=trainer.outputs["model_run"], min_f1=min_f1)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, trainer, gate, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
    )
