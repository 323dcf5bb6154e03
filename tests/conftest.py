"""Shared pytest set-up: quiet TensorFlow, two logical CPUs (MirroredStrategy tests), --run-slow, heavy files first."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def one_error_line(capsys, exit_info):
    """The one stderr line of a command that exited with code 2 (asserted, with no traceback)."""
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# The files whose tests train whole runs, heaviest first (measured: 70-250 s each of a 14-minute suite).
# `make test` runs the suite on two workers a file at a time (`--dist loadfile`), and xdist would hand
# out files with many tests first: these few-test files came last, and one worker ran them alone for
# minutes while the other idled.
HEAVY_FILES = ("test_runs.py", "test_kd_run.py", "test_export.py", "test_multitask.py", "test_train_cli.py",
               "test_training.py", "test_serving_export.py", "test_experiments.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With `--dist loadfile`, a scheduler that hands out HEAVY_FILES first, in their order (None otherwise:
    xdist's own)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class HeavyFilesFirst(LoadFileScheduling):
        def _assign_work_unit(self, node):
            self.workqueue.move_to_end(min(self.workqueue, key=file_rank), last=False)
            super()._assign_work_unit(node)

    return HeavyFilesFirst(config, log)


def file_rank(scope):
    """0, 1, ... for HEAVY_FILES in order; len(HEAVY_FILES) for any other test file."""
    name = scope.rsplit("/", 1)[-1]
    return HEAVY_FILES.index(name) if name in HEAVY_FILES else len(HEAVY_FILES)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, run only with --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow test: pass --run-slow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_root_logging():
    """Puts back the root logger's handlers after each test: a command run in-process installs its own
    (on the test's captured stdout, which is closed once the test ends)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def shared_file(relative):
    """A file under ../shared, or a pytest skip saying why it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (tests read ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def two_replicas():
    """The one MirroredStrategy over the 2 logical CPUs that every test shares.

    Two MirroredStrategy objects in one process reuse collective instance keys, and the second
    then fails with "Shape mismatch in the collective instance"; the product, too, creates one
    strategy per process (`road_tf.training.get_strategy`).
    """
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")[:2]])
