"""python -m pipelines.kubeflow_runner: compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

Compiles the same `create_pipeline` with TFX's KubeflowV2DagRunner into a pipeline-spec JSON
file, without running it (submit it with the KFP client or Vertex AI). Every component runs in
`--image` (built from pipelines/Dockerfile). The data components get `--beam-arg` flags; the
Trainer's distribution strategy comes from the recipe (`train.strategy`). Needs the
`kfp-pipeline-spec` package (see requirements.txt).
"""

import pathlib
import posixpath
import re
import sys
import tempfile

from pipelines import configs
from pipelines.local_runner import (add_pipeline_arguments, check_apart, check_pipeline_flags, flag_name,
                                    pipeline_settings, resolve_config)
from road_tf import config as config_lib
from road_tf.errors import ArgumentParser, RoadError, cli_main, first_control_character, nonempty
from road_tf.files import check_distinct, check_writable_file, write_atomic

# A container image reference as Docker parses it: [host[:port]/]path[:tag][@digest], the path in
# lower case. TFX would put an empty --image aside for its own image, which has no road_tf in it.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[\w][\w.-]{0,127})?"
_DIGEST = r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
IMAGE_REFERENCE = re.compile(rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}")


def check_image(image):
    """Raises RoadError unless `image` is a container image reference (e.g. gcr.io/p/road-tfx:1)."""
    if not IMAGE_REFERENCE.fullmatch(image):
        raise RoadError(f"--image {image!r}: not a container image reference (e.g. gcr.io/PROJECT/road-tfx:1; "
                        f"the path in lower case, no spaces)")


URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
CLUSTER_PATHS = ("pipeline_root", "data_root", "serving_model_dir")
"""The flags naming paths that the components, in containers on the cluster, read or write."""


def check_cluster_path(path, flag):
    """Raises RoadError unless `path` is a URI that names its bucket or host (gs://BUCKET/...; file:///
    needs none) or an absolute path, without control characters: every component runs in a
    container on the cluster, where a relative path names a folder in that container's own working
    folder, which is gone when it stops, and "gs://", "gs:///x" or a newline names no folder any of
    them can reach."""
    scheme = URI_SCHEME.match(path)
    if not (scheme or path.startswith("/")):
        raise RoadError(f"{flag} {path}: a relative path, which each container on the cluster would resolve in its "
                        "own working folder; give a URI (gs://BUCKET/...) or an absolute path")
    rest = path[scheme.end():] if scheme else ""
    if scheme and (not rest.strip("/") or (rest.startswith("/") and scheme.group().lower() != "file://")):
        raise RoadError(f"{flag} {path}: names no bucket or host after {scheme.group()}; give the bucket or host "
                        "and folder (gs://BUCKET/...)")
    control = first_control_character(path)
    if control:
        raise RoadError(f"{flag} {path!r}: holds a control character ({control!r})")


def parse_args(argv):
    parser = ArgumentParser(prog="python -m pipelines.kubeflow_runner", description=__doc__.splitlines()[0])
    add_pipeline_arguments(parser)
    parser.add_argument("--output", type=nonempty, required=True, help="the compiled pipeline spec (PIPELINE.json)")
    parser.add_argument("--image", required=True, help="container image every component runs in")
    parser.add_argument("--pipeline-root", type=nonempty, default=f"gs://YOUR_BUCKET/tfx/{configs.PIPELINE_NAME}",
                        help="where the cluster keeps artifacts (e.g. gs://bucket/tfx)")
    parser.add_argument("--data-root", type=nonempty, default="gs://YOUR_BUCKET/road_tfx/examples",
                        help="Split-train/ and Split-eval/ TFRecords (written by local_runner --prepare-only)")
    parser.add_argument("--serving-model-dir", type=nonempty,
                        default=f"gs://YOUR_BUCKET/saved_models/{configs.MODEL_NAME}",
                        help="where the Pusher writes numbered versions")
    args = parser.parse_args(argv)
    check_pipeline_flags(args)  # also: every flag here is UTF-8 text
    check_image(args.image)
    for dest in CLUSTER_PATHS:
        check_cluster_path(getattr(args, dest), flag_name(dest))
    check_apart(args.pipeline_root, args.serving_model_dir, "--pipeline-root", lies_within_uri)
    check_writable_file(args.output, "--output")
    check_distinct({"--output": args.output}, {"--config": config_lib.resolve_recipe(args.config)})
    return args


def lies_within_uri(path, folder):
    """Whether the cluster path `path` (gs://..., /...) is `folder` or lies in it, compared by name:
    the cluster's storage cannot be looked at from here."""
    path, folder = (posixpath.normpath(name).rstrip("/") for name in (path, folder))
    return path == folder or path.startswith(folder + "/")


def kubeflow_v2_runner():
    """TFX's kubeflow_v2_dag_runner module, or a RoadError saying which package is missing."""
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
    except ImportError as error:
        raise RoadError(f"the Kubeflow V2 runner cannot be imported ({error}); it needs kfp-pipeline-spec "
                        f"(pip install kfp-pipeline-spec==0.2.2, see requirements.txt)") from None
    return kubeflow_v2_dag_runner


def compile_pipeline(args, config):
    """Writes the pipeline spec JSON to `args.output` (atomically); returns its path."""
    from pipelines.pipeline import create_pipeline

    runner_module = kubeflow_v2_runner()
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME, pipeline_root=args.pipeline_root, data_root=args.data_root,
        serving_model_dir=args.serving_model_dir, **pipeline_settings(args, config))
    output = pathlib.Path(args.output)
    with tempfile.TemporaryDirectory() as scratch:
        runner = runner_module.KubeflowV2DagRunner(
            config=runner_module.KubeflowV2DagRunnerConfig(default_image=args.image),
            output_dir=scratch, output_filename=output.name)
        runner.run(pipeline)
        write_atomic(output, (pathlib.Path(scratch) / output.name).read_bytes())
    return output


@cli_main
def main(argv=None):
    args = parse_args(argv)
    config = resolve_config(args)
    for setting, path in configs.recipe_paths(config).items():
        check_cluster_path(path, setting)
    print(f"compiled: {compile_pipeline(args, config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
