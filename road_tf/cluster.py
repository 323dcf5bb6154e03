"""Which task of a multi-worker cluster this process is (TF_CONFIG), and where it writes.

No TensorFlow here: commands decide where their files go before they load it.
"""

import atexit
import functools
import json
import os
import pathlib
import shutil
import tempfile

from road_tf.errors import ConfigError


def cluster_task():
    """(task type, task index, cluster dict) of this process, read from the TF_CONFIG variable.

    TF_CONFIG is JSON: {"cluster": {"worker": ["host:port", ...], "chief": [...] (optional)},
    "task": {"type": "worker", "index": 0}}; Kubeflow's training operators and Vertex AI set it.

    Raises:
        ConfigError: TF_CONFIG is absent, not JSON, or its task is not in its cluster.
    """
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ConfigError("train.strategy: multi_worker needs a cluster, but TF_CONFIG is not set "
                          "(see pipelines/README.md, Multi-worker training)")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({error.msg} at column {error.colno})") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not any(isinstance(cluster.get(job), list) and cluster[job]
                                                for job in ("chief", "worker")):
        raise ConfigError('TF_CONFIG: "cluster" must list "worker" (and optionally "chief") addresses')
    if not isinstance(task, dict) or not isinstance(task.get("index"), int) \
            or task.get("index") >= len(cluster.get(task.get("type"), None) or []):
        raise ConfigError(f'TF_CONFIG: "task" must name a job of the cluster and an index in it, got {task!r}')
    return task["type"], task["index"], cluster


def is_chief(train_config):
    """True unless this process is a multi-worker task other than the chief.

    The chief is the "chief" task, or worker 0 when the cluster has no "chief" job (TF's rule).
    """
    if train_config.strategy != "multi_worker":
        return True
    task_type, index, cluster = cluster_task()
    return task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)


def worker_path(path, train_config):
    """Where this process writes `path`: `path` itself on the chief, a private scratch copy elsewhere.

    Every multi-worker task runs the same code; only the chief's files are the run's. Another
    worker writes into a temporary folder that is removed when the process exits (it still
    writes, since a save can take part in collective operations). The scratch copy's folder exists.
    """
    path = pathlib.Path(path).absolute()
    if is_chief(train_config):
        return path
    private = _scratch_dir() / path.relative_to(path.anchor)
    private.parent.mkdir(parents=True, exist_ok=True)
    return private


@functools.lru_cache(maxsize=None)
def _scratch_dir():
    """This process's temporary folder for a non-chief worker's writes (removed at exit)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="road_tf-worker-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder
