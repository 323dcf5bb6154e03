"""Which task of a multi-worker cluster this process is (TF_CONFIG), where it writes, and the cores
it may use.

No TensorFlow here: commands decide where their files go before they load it.
"""

import atexit
import functools
import json
import os
import pathlib
import shutil
import tempfile

from road_tf.errors import ConfigError, shown


def usable_cores():
    """The number of CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cluster_task():
    """(task type, task index, cluster dict) of this process, read from the TF_CONFIG variable.

    TF_CONFIG is JSON: {"cluster": {"worker": ["host:port", ...], "chief": [...] (optional)},
    "task": {"type": "worker", "index": 0}}; Kubeflow's training operators and Vertex AI set it.

    Raises:
        ConfigError: TF_CONFIG is absent or not JSON; its cluster lists no "chief" or "worker"
            address, a "chief" job other than one address, or an address that is not a non-empty
            string; or its task is not the chief or a worker of its cluster.
    """
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ConfigError("train.strategy: multi_worker needs a cluster, but TF_CONFIG is not set "
                          "(see pipelines/README.md, Multi-worker training)")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({error.msg} at column {error.colno})") from None
    except (ValueError, RecursionError):  # a number of more digits than Python converts; nesting too deep
        raise ConfigError("TF_CONFIG: not JSON that Python reads (a number too long or nesting too deep)") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    jobs = {job: cluster.get(job) for job in ("chief", "worker") if job in cluster} if isinstance(cluster, dict) else {}
    listed = all(isinstance(addresses, list) and all(isinstance(address, str) and address.strip()
                                                     for address in addresses) for addresses in jobs.values())
    if not (listed and any(jobs.values()) and len(jobs.get("chief", [None])) == 1):
        raise ConfigError('TF_CONFIG: "cluster" must list "worker" addresses, one "chief" address or both, each a '
                          '"host:port" string')
    index = task.get("index") if isinstance(task, dict) else None
    job = task.get("type") if isinstance(task, dict) else None
    if not (isinstance(job, str) and job in jobs and isinstance(index, int) and not isinstance(index, bool)
            and 0 <= index < len(jobs[job])):
        raise ConfigError(f'TF_CONFIG: "task" must name the "chief" or a "worker" of the cluster and an index in '
                          f'it, got {shown(task)}')
    return job, index, cluster


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
