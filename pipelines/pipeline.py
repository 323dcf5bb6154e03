"""`create_pipeline`: a pure description of the road_tf TFX pipeline (no paths of its own).

ImportExampleGen (SQuAD questions as tf.Examples, train/eval splits) -> StatisticsGen ->
SchemaGen -> ExampleValidator -> Trainer (road_tf via the module file) -> SquadGate (floor and
no-regression rules; the latest blessed model comes from a LatestBlessedModelStrategy resolver)
-> Pusher (to a TF Serving model directory). The same object runs locally (LocalDagRunner) and
compiles for Kubeflow Pipelines v2 / Vertex AI (KubeflowV2DagRunner).
"""

from tfx import v1 as tfx

from pipelines.gate import SquadGate

TRAINER_RUN_FN = "pipelines.modules.trainer_module.run_fn"
RESOLVER_ID = "latest_blessed_model_resolver"


def create_pipeline(pipeline_name, pipeline_root, data_root, serving_model_dir, config_yaml, margin, tolerance,
                    metadata_connection_config=None, beam_pipeline_args=(), enable_cache=True, run_fn=TRAINER_RUN_FN,
                    inputs_stamp=""):
    """Returns the tfx.dsl.Pipeline.

    Args:
        data_root: folder with `Split-train/` and `Split-eval/` TFRecord files of tf.Examples
            (keys in `road_tf.data.records`; written by `pipelines.data.write_examples`).
        serving_model_dir: where the Pusher writes `<version>/` folders for TF Serving.
        config_yaml: the resolved road_tf run configuration (recipe + `--set` pairs) as YAML text;
            the Trainer replaces only its data source.
        margin, tolerance: the gate's floor margin and regression tolerance, F1 points.
        metadata_connection_config: MLMD connection (None on Kubeflow/Vertex, which bring theirs).
        beam_pipeline_args: Beam flags for the data components, e.g. ["--runner=DataflowRunner"].
        enable_cache: reuse a component's outputs when its inputs and properties are unchanged.
        run_fn: dotted path of the Trainer's `run_fn` (an importable module, so TFX does not
            package and pip-install a copy of a module file).
        inputs_stamp: a digest of the files the Trainer reads besides the examples
            (`configs.inputs_stamp`), kept in its custom_config so that a changed file is a changed
            input to the cache; "" where they cannot be looked at (a cluster's storage).
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
        custom_config={"config_yaml": config_yaml, "inputs_stamp": inputs_stamp},
    )
    trainer.add_upstream_node(example_validator)
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(RESOLVER_ID)
    gate = SquadGate(model=trainer.outputs["model"], model_run=trainer.outputs["model_run"],
                     examples=example_gen.outputs["examples"], baseline_blessing=baseline.outputs["model_blessing"],
                     margin=margin, tolerance=tolerance)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, trainer, baseline, gate, pusher],
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
        enable_cache=enable_cache,
    )
