"""Constants of the local pipeline run (the runner holds the paths, pipeline.py holds none)."""

PIPELINE_NAME = "road_tfx"
MODEL_NAME = "road_tfx"
# The evaluation gate blesses a model whose dev F1 (official SQuAD 2.0 rules, in %) reaches this.
MIN_DEV_F1 = 30.0
# road_tf `--set` overrides applied inside the Trainer (the demo-scale student).
TRAINER_OVERRIDES = ("train.steps=300",)
