"""Constants of the pipeline runs (the runners hold the paths, pipeline.py holds none)."""

# Kubeflow V2 accepts [a-z0-9][a-z0-9-]* only.
PIPELINE_NAME = "road-tfx"
MODEL_NAME = "road_tfx"
# Gate floor: dev F1 must exceed the always-"no answer" F1 of the eval split by this many points.
NO_ANSWER_MARGIN = 1.0
# Gate regression rule: dev F1 may trail the latest blessed model's F1 by at most this many points.
REGRESSION_TOLERANCE = 0.5
# A single SQuAD file is split by article until the eval half holds this many questions.
MIN_DEV_QUESTIONS = 1000
