"""The project's imports point one way: config -> data/models/losses -> training, tasks, distillation,
multitask, evaluation -> the stage runner -> CLIs, export, pipelines, serving.

Every `import` counts, including those inside functions, so no import can hide a cycle or an
upward dependency.

The command-line modules import without TensorFlow or Keras: a command loads them (seconds) in the
body that ends a Ctrl-C or SIGTERM with one line (`errors.one_line_when_stopped`), after its quick
checks.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("road_tf", "pipelines", "serving")

# Lower layers first; a module may import from its own layer or any layer before it.
LAYERS = (
    ("road_tf", "road_tf.errors", "road_tf.files", "road_tf.registry", "road_tf.minilm", "road_tf.config",
     "road_tf.cluster"),
    ("road_tf.data",),
    ("road_tf.models", "road_tf.losses"),
    ("road_tf.training", "road_tf.evaluation", "road_tf.tasks"),
    ("road_tf.distillation", "road_tf.multitask", "road_tf.saved_model"),
    ("road_tf.experiment",),
    ("road_tf.train", "road_tf.export", "road_tf.predict", "road_tf.evaluate", "road_tf.cache_teacher",
     "road_tf.experiments", "pipelines", "serving"),
)


def module_name(path):
    """Dotted module name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules():
    """{module name: path} of every project source file."""
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported_modules(path, name, known):
    """Project modules that the file at `path` (module `name`) imports, anywhere in the file."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(name):
    """Index in LAYERS of the longest matching prefix of `name`."""
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    assert best is not None, f"{name} is in no layer of LAYERS"
    return best[0]


GRAPH = {name: imported_modules(path, name, project_modules()) for name, path in project_modules().items()}
COMMANDS = sorted(name for name in LAYERS[-1] if name.startswith("road_tf."))
"""The `python -m` commands of road_tf: its modules in the last layer."""


def test_every_module_has_a_layer():
    for name in GRAPH:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_upward_import(name):
    upward = sorted(target for target in GRAPH[name] if layer_of(target) > layer_of(name))
    assert not upward, f"{name} (layer {layer_of(name)}) imports higher layers: {upward}"


def test_no_import_cycle():
    """Depth-first search over the import graph; a back edge is a cycle."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_stage_runner_is_imported_only_by_clis_and_pipelines():
    importers = sorted(name for name, targets in GRAPH.items() if "road_tf.experiment" in targets)
    assert all(layer_of(name) == len(LAYERS) - 1 for name in importers), importers


def test_the_checker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "road_tf" / "data" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from road_tf.experiment import run_training\n    from ..models import heads\n")
    known = {"road_tf.experiment", "road_tf.models.heads", "road_tf.models"}
    found = imported_modules(source, "road_tf.data.probe", known)
    assert found == known
    assert [layer_of(target) > layer_of("road_tf.data.probe") for target in sorted(found)] == [True, True, True]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_imports_without_tensorflow_or_keras(command):
    probe = f"import sys, {command}; print(sorted({{'tensorflow', 'keras'}} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (completed.returncode, completed.stdout) == (0, "[]\n"), completed.stderr
