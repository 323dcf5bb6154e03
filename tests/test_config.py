"""Config parsing, validation and recipe files."""

import dataclasses
import re

import pytest
import yaml

from road_tf import config as config_lib
from road_tf.errors import ConfigError
from road_tf.files import MAX_CONFIG_BYTES

# One online teacher, for settings that need one.
TEACHER = "distillation.teachers=[{model: {num_layers: 4}}]"


def test_defaults_are_valid_and_frozen():
    config = config_lib.Config()
    assert config.task == "squad2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.steps = 3


def test_set_overrides_are_typed():
    config = config_lib.load_config(None, ["train.steps=100", "train.learning_rate=2e-4", "data.skip_bad_records=true",
                                           "multitask.tasks=squad2,synthetic_nli", "multitask.k=2",
                                           "multitask.steps=10"])
    assert config.train.steps == 100 and isinstance(config.train.steps, int)
    assert config.train.learning_rate == pytest.approx(2e-4)
    assert config.data.skip_bad_records is True
    assert config.multitask.tasks == ("squad2", "synthetic_nli")


@pytest.mark.parametrize("pair, field", [
    ("train.steps=abc", "train.steps"),
    ("train.steps=0", "train.steps"),
    ("no.such.key=1", "no"),
    ("train.nope=1", "train.nope"),
    ("model.hidden_dim=65", "model.hidden_dim"),
    ("distillation.kd_weight=1.5", "distillation.kd_weight"),
    ("train.strategy=gpu_farm", "train.strategy"),
    ("data.doc_stride=500", "data.doc_stride"),
    ("multitask.k=3", "multitask.k"),
    ("task=chess", "task"),
    ("export.precision=float16", "export.precision"),
    ("export.window_group_size=0", "export.window_group_size"),
    ("export.length_bucket=0", "export.length_bucket"),
    ("export.max_constant_mib=-1", "export.max_constant_mib"),
    ("export.max_constant_mib=1025", "export.max_constant_mib"),
    ("export.null_threshold=tuned", "export.null_threshold"),
    ("export.n_best_size=5", "export.n_best_size"),
    ("decode.n_best_size=0", "decode.n_best_size"),
    ("decode.max_answer_length=0", "decode.max_answer_length"),
    # Once unbounded: 2**63 - 1 trained a whole stage, then failed casting it into the int32 decoder.
    ("decode.max_answer_length=9223372036854775807", "decode.max_answer_length"),
    ("export.length_bucket=16385", "export.length_bucket"),
    # With replacement the k-versus-tasks check is skipped; no task failed only after the run folder was made.
    ("multitask.tasks=[]", "multitask.tasks"),
    # mse compares logits, so it cannot read the averaged probabilities ensemble=probs (the default) names.
    ("distillation={teachers: [{}, {}], kd_loss: mse}", "distillation.ensemble"),
])
def test_bad_values_name_the_field(pair, field):
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, [pair])
    assert str(error.value).startswith(field)


@pytest.mark.parametrize("name", [" ", "   ", " road", "road "])
def test_a_model_name_with_whitespace_at_either_end_is_refused(name, tmp_path):
    """A model_name of spaces, or with one at an end, made a folder named " " (or "road ") under saved_models."""
    message = f"^export.model_name: must be a folder name .*no whitespace at either end\\), got {re.escape(repr(name))}$"
    with pytest.raises(ConfigError, match=message):
        config_lib.load_config(None, [f'export.model_name="{name}"'])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f'export:\n  model_name: "{name}"\n')
    with pytest.raises(ConfigError, match=message):
        config_lib.load_config(recipe)
    assert config_lib.load_config(None, ['export.model_name="road demo"']).export.model_name == "road demo"


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_lib.parse_set("train.steps")


def test_integers_too_long_to_convert_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="^train.steps: '9999.*' is out of range \\(more than 64 bits\\)$"):
        config_lib.load_config(None, ["train.steps=" + "9" * 5000])
    big = tmp_path / "big.yaml"
    big.write_text("train:\n  steps: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match="^train.steps: '9999.*' is out of range"):
        config_lib.load_config(big)
    for number in ("9" * 5000, "0x" + "f" * 4000, "0b" + "1" * 200, ":".join(["1"] * 60), "1" * 101):
        big.write_text(f"train:\n  steps: !!int {number}\n")
        with pytest.raises(ConfigError, match=f"^{big}: not valid YAML \\(line 2: '.*' is too long for a !!int "
                                              "\\(at most 100 characters\\)\\)$"):
            config_lib.load_config(big)
    with pytest.raises(ConfigError, match="^--set train.learning_rate: not valid YAML \\(line 1: '.*' is too long for "
                                          "a !!float"):
        config_lib.load_config(None, ["train.learning_rate=!!float 0." + "1" * 200])
    assert config_lib.load_config(None, ["train.steps=!!int 0b" + "1_" * 30 + "1"]).train.steps == 2**31 - 1


@pytest.mark.parametrize("given, field, value", [
    ("010", "train.steps", 10), ("+7", "train.steps", 7), ("1.10", "export.model_name", "1.10"),
    ("007", "export.model_name", "007"), ("yes", "export.model_name", "yes"),
    ("2024-01-01", "export.model_name", "2024-01-01"),
    ("1e-3", "train.learning_rate", 1e-3), ("TRUE", "train.jit_compile", True), ("'3'", "train.steps", 3),
])
def test_a_plain_scalar_is_read_by_its_field_not_by_yaml_guesses(given, field, value, tmp_path):
    """YAML 1.1 would read 010 as 8, 1.10 as 1.1, 007 as 7 and yes as true; the field's type decides."""
    section, name = field.split(".")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"{section}:\n  {name}: {given}\n")
    for config in (config_lib.load_config(None, [f"{field}={given}"]), config_lib.load_config(recipe)):
        assert getattr(getattr(config, section), name) == value


@pytest.mark.parametrize("pair, message", [
    ("train.steps=1:30", "train.steps: expected an integer, got '1:30'"),
    ("train.steps=0x10", "train.steps: expected an integer, got '0x10'"),
    ("train.steps=1_000", "train.steps: expected an integer, got '1_000'"),
    ("train.jit_compile=yes", "train.jit_compile: expected true or false, got 'yes'"),
    ("train.seed=2001-12-14", "train.seed: expected an integer, got '2001-12-14'"),
])
def test_values_yaml_1_1_would_turn_into_other_numbers_are_refused(pair, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        config_lib.load_config(None, [pair])


@pytest.mark.parametrize("text", ["[]", "''", "0", "false"])
def test_a_recipe_that_is_no_mapping_is_refused_even_when_empty_looking(tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"^{recipe}: expected a mapping of overrides at the top level$"):
        config_lib.load_config(recipe)
    recipe.write_text("# only a comment\n")
    assert config_lib.load_config(recipe) == config_lib.Config()


def test_a_config_name_too_long_for_any_file_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="^--config 'xxxx.*': no such recipe; known: demo"):
        config_lib.resolve_recipe("x" * 300)
    for name in ("x" * 300 + ".yaml", f"{tmp_path}/{'x' * 300}/r.yaml"):
        with pytest.raises(ConfigError, match="^.*xxxx.*: no such config file$"):
            config_lib.load_config(config_lib.resolve_recipe(name))


def test_yaml_overrides_and_round_trip(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  steps: 7\ndistillation:\n  teachers:\n    - {weight: 2.0, train_steps: 3}\n")
    config = config_lib.load_config(recipe, ["train.batch_size=4"])
    assert config.train.steps == 7 and config.train.batch_size == 4
    assert config.distillation.teachers[0].weight == 2.0
    assert config.distillation.teachers[0].model.num_layers == 4
    dumped = tmp_path / "config.yaml"
    dumped.write_text(config_lib.dump_yaml(config))
    assert config_lib.load_config(dumped) == config


def test_custom_layer_matches_parse():
    config = config_lib.load_config(None, [
        TEACHER, "distillation.layer_map=custom",
        "distillation.layer_matches=[{teacher_layer: 4, student_layer: 2, weight: 0.5}]",
    ])
    assert config.distillation.layer_matches == (config_lib.LayerMatch(4, 2, 0.5),)


@pytest.mark.parametrize("line", ["model_name: null", "model_name: ~", "model_name:"])
def test_a_null_value_is_refused_not_taken_for_text(line, tmp_path):
    """Plain scalars are text the field converts, but null stays null: not a model named "null"."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"export:\n  {line}\n")
    with pytest.raises(ConfigError, match="^export.model_name: expected a string, got None$"):
        config_lib.load_config(recipe)


@pytest.mark.parametrize("value", ["null", "~"])
def test_a_null_set_value_is_refused_and_a_quoted_one_is_text(value):
    with pytest.raises(ConfigError, match="^export.model_name: expected a string, got None$"):
        config_lib.load_config(None, [f"export.model_name={value}"])
    assert config_lib.load_config(None, [f'export.model_name="{value}"']).export.model_name == value


def test_a_finished_runs_config_that_no_longer_validates_names_its_file(tmp_path):
    (tmp_path / "config.yaml").write_text("train:\n  steps: 10\n  steps_per_execution: 4\n")
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'config.yaml'}: train.steps_per_execution: 4 does not divide"):
        config_lib.config_of_run(tmp_path)


def test_a_layer_match_given_twice_is_refused():
    """Its loss was weighted twice and its metrics merged into one tracker."""
    matches = ("[{teacher_layer: 4, student_layer: 2}, {teacher_layer: 1, student_layer: 1}, "
               "{teacher_layer: 4, student_layer: 2, weight: 3}]")
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, ["distillation.layer_map=custom", f"distillation.layer_matches={matches}"])
    assert str(error.value) == ("distillation.layer_matches: gives the pair (teacher_layer, student_layer) (4, 2) more "
                                "than once; give each pair once, with its weight")


def test_more_teachers_than_a_run_may_distill_from_are_refused():
    with pytest.raises(ConfigError, match=r"^distillation.teachers: lists 33 teachers, more than the 32 a run may "):
        config_lib.load_config(None, ["distillation.teachers=[" + ", ".join(["{}"] * 33) + "]"])
    assert len(config_lib.load_config(None, ["distillation.teachers=[" + ", ".join(["{}"] * 32) + "]"])
               .distillation.teachers) == 32


def test_layer_matches_without_a_custom_map_are_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"distillation.layer_matches: 1 entries given but layer_map is uniform"):
        config_lib.load_config(None, [
            TEACHER, "distillation.layer_map=uniform",
            "distillation.layer_matches=[{teacher_layer: 4, student_layer: 2, weight: 0.5}]"])


def test_bad_yaml_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_lib.load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        config_lib.load_config(listing)
    with pytest.raises(ConfigError, match="no such config file"):
        config_lib.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=f"^{tmp_path}: a folder, not a config file$"):
        config_lib.load_config(tmp_path)
    with pytest.raises(ConfigError, match="^/dev/null: a device or pipe, not a config file$"):
        config_lib.load_config("/dev/null")


@pytest.mark.parametrize("text, why", [
    ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nmodel:\n  pretrained_layers: [*b, *b, *b]\n",
     "line 2: aliases (*a) are not allowed in recipes"),
    ("train:\n  steps: 100\ntrain:\n  learning_rate: 0.1\n", "line 3: duplicate key 'train'"),
    ("train:\n  steps: 100\n  steps: 200\n", "line 3: duplicate key 'steps'"),
])
def test_recipes_with_aliases_or_repeated_keys_are_refused(tmp_path, text, why):
    """A few hundred bytes of nested aliases would stand for billions of values; a repeated key
    would silently drop the first one's settings."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=f"^{recipe}: not valid YAML \\({re.escape(why)}\\)$"):
        config_lib.load_config(recipe)


def test_a_recipe_above_a_mebibyte_is_refused_unread(tmp_path):
    recipe = tmp_path / "big.yaml"
    recipe.write_text("train:\n  steps: 100\n" + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than 1,048,576 bytes, too large for a config file$"):
        config_lib.load_config(recipe)


def test_errors_show_long_values_shortened():
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(overrides=["train.steps=" + "x" * 5000])
    assert str(error.value).startswith("train.steps: expected an integer, got 'xxx") and len(str(error.value)) < 150


def test_every_recipe_is_valid_and_holds_only_known_overrides():
    """...and opens with a one-line summary, the line `train --help` lists (four stopped mid-sentence)."""
    recipes = config_lib.recipes()
    assert "demo" in recipes
    assert [name for name, summary in recipes.items() if not summary.endswith(".")] == []
    defaults = config_lib.to_dict(config_lib.Config())
    for name in recipes:
        path = config_lib.resolve_recipe(name)
        config_lib.load_config(path)
        overrides = yaml.safe_load(path.read_text()) or {}
        assert isinstance(overrides, dict) and set(overrides) <= set(defaults), name


@pytest.mark.parametrize("pretrained, hint", [
    ("minilm", "keep some of its layers with model.pretrained_layers"), ("preset", "remove it")])
def test_encoder_sizes_beside_a_pretrained_encoder_are_refused(pretrained, hint):
    """`--config squad2_minilm --set model.num_layers=2` trained all six MiniLM layers without a word
    (2 is also the default: what counts is that the user set it)."""
    preset = ["model.preset=bert_tiny_en_uncased"] if pretrained == "preset" else []
    with pytest.raises(ConfigError, match=rf"^model.num_layers: is set, but the encoder of model.pretrained "
                                          rf"\('{pretrained}'\) has its own sizes, so it would be ignored; {hint}$"):
        config_lib.load_config(None, [f"model.pretrained={pretrained}", *preset, "model.num_layers=2"])
    with pytest.raises(ConfigError, match=r"^distillation.teachers\[0\].model.hidden_dim: is set, .*; remove it$"):
        config_lib.load_config(None, [f"distillation.teachers=[{{model: {{pretrained: {pretrained}, hidden_dim: 64"
                                      + (", preset: bert_tiny_en_uncased" if preset else "") + "}}]"])
    assert config_lib.load_config(None, ["model.num_layers=3"]).model.num_layers == 3


def test_a_run_config_listing_every_field_beside_a_pretrained_encoder_still_loads(tmp_path):
    """A run's config.yaml lists the (default) sizes beside model.pretrained: it is the run's record, not
    a user's setting, and the TFX Trainer loads it as a recipe with overrides on top."""
    config = config_lib.load_config(None, ["model.pretrained=minilm"])
    (tmp_path / "config.yaml").write_text(config_lib.dump_yaml(config))
    assert config_lib.config_of_run(tmp_path) == config
    assert config_lib.load_config(tmp_path / "config.yaml", ["train.steps=5"]).model == config.model


def test_max_context_bytes_is_at_most_a_data_file():
    """3,000,000,000 wrapped around in the exported graph's int32 sizes: the model refused every text."""
    with pytest.raises(ConfigError, match=r"^data.max_context_bytes: must be in \[1, 1073741824\] .*got 3000000000$"):
        config_lib.load_config(None, ["data.max_context_bytes=3000000000"])
    assert config_lib.load_config(None, ["data.max_context_bytes=1073741824"]).data.max_context_bytes == 1 << 30


def test_pretrained_layers_parse():
    config = config_lib.load_config(None, ["model.pretrained=minilm", "model.pretrained_layers=[1, 3, 5]"])
    assert config.model.pretrained_layers == (1, 3, 5)
    assert config_lib.Config().model.pretrained_layers == ()


@pytest.mark.parametrize("pairs, why", [
    (["model.pretrained_layers=[1]"], "needs pretrained minilm, a checkpoint folder or a run, not 'none'"),
    (["model.pretrained=preset", "model.preset=bert_tiny_en_uncased", "model.pretrained_layers=[0]"],
     "not 'preset'"),
    (["model.pretrained=minilm", "model.pretrained_layers=[3, 1]"], "strictly increasing, got [3, 1]"),
    (["model.pretrained=minilm", "model.pretrained_layers=[1, 1]"], "strictly increasing, got [1, 1]"),
    (["model.pretrained=minilm", "model.pretrained_layers=[-1, 2]"], "non-negative, got [-1, 2]"),
])
def test_bad_pretrained_layers_name_the_field(pairs, why):
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, pairs)
    assert str(error.value).startswith("model.pretrained_layers: ") and why in str(error.value)


@pytest.mark.parametrize("pair, field, switch_on, switch_off", [
    ("data.train_path=mine.json", "data.train_path", "data.source=json", "data.source=synthetic"),
    ("data.dev_path=dev.json", "data.dev_path", "data.source=json", "data.source=synthetic"),
    ("data.tfds_name=squad/v2.0", "data.tfds_name", "data.source=tfds", "data.source=synthetic"),
    ("model.preset=bert_tiny_en_uncased", "model.preset", "model.pretrained=preset", "model.pretrained=none"),
    ("distillation.kd_weight=0.9", "distillation.kd_weight", TEACHER, "distillation.teachers=[]"),
    ("distillation.hidden_loss=mse", "distillation.hidden_loss", TEACHER, "distillation.teachers=[]"),
    ("distillation.temperature=4", "distillation.temperature", TEACHER, "distillation.teachers=[]"),
    ("multitask.k=4", "multitask.k", "multitask.steps=10", "multitask.steps=0"),
    ("multitask.tasks=[squad2, mnli]", "multitask.tasks", "multitask.steps=10", "multitask.steps=0"),
])
def test_a_setting_its_switch_would_ignore_is_an_error_unless_the_switch_is_set(pair, field, switch_on, switch_off):
    """Left at its default, the switch would ignore the setting: an error. Set, either way, it is not."""
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, [pair])
    switch = switch_off.split("=")[0]
    assert str(error.value).startswith(f"{field}: is set, but {switch} is not"), str(error.value)
    config_lib.load_config(None, [pair, switch_on])
    config_lib.load_config(None, [switch_off, pair])


@pytest.mark.parametrize("pairs, message", [
    (["multitask.batch_size=6"], "multitask.batch_size: 6 must split into multitask.k=4 equal passes"),
    (["train.batch_size=30"], "multitask.batch_size: 0 (so train.batch_size 30) must split into multitask.k=4 "
                              "equal passes"),
])
def test_a_multitask_batch_that_does_not_split_into_k_passes_is_refused_with_the_config(pairs, message):
    """The multi-task stage found it only once it ran, after the run's folder had been made."""
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, ["multitask.steps=10", "multitask.k=4", *pairs])
    assert str(error.value) == message
    config_lib.load_config(None, ["multitask.steps=0", *pairs])


def test_a_separate_dev_file_beside_split_dev_questions_is_an_error():
    with pytest.raises(ConfigError, match="^data.dev_path: is not read when data.split_dev_questions > 0"):
        config_lib.load_config(None, ["data.source=json", "data.train_path=t.json", "data.dev_path=d.json",
                                      "data.split_dev_questions=100"])


def test_task_files_parse_from_a_list_of_mappings():
    config = config_lib.load_config(None, [
        "multitask.steps=10", "multitask.tasks=[squad2, sentiment, synthetic_nli]",
        "multitask.task_files=[{task: sentiment, train_path: s.tsv.gz, split_dev: 100},"
        " {task: synthetic_nli, train_path: t.tsv, dev_path: d.tsv}]",
    ])
    assert config.multitask.task_files == (config_lib.TaskFiles("sentiment", "s.tsv.gz", "", 100),
                                           config_lib.TaskFiles("synthetic_nli", "t.tsv", "d.tsv", 0))
    assert config.multitask.files_of("sentiment").split_dev == 100
    assert config.multitask.files_of("squad2") is None


@pytest.mark.parametrize("entries, field, why", [
    ("[{task: mnli, train_path: a, dev_path: b}]", "multitask.task_files[0].task", "not one of multitask.tasks"),
    ("[{task: squad2, train_path: a, dev_path: b}]", "multitask.task_files[0].task", "is the main task"),
    ("[{task: sentiment, train_path: a, dev_path: b}, {task: sentiment, train_path: c, split_dev: 2}]",
     "multitask.task_files[1].task", "lists 'sentiment' a second time"),
    ("[{task: sentiment, train_path: '', dev_path: b}]", "multitask.task_files[0].train_path", "is required"),
    ("[{task: sentiment, dev_path: b}]", "multitask.task_files[0]", "train_path"),
    ("[{task: sentiment, train_path: a, dev_path: b, split_dev: 5}]", "multitask.task_files[0].dev_path",
     "must be empty when split_dev"),
    ("[{task: sentiment, train_path: a}]", "multitask.task_files[0].dev_path", "required unless split_dev"),
    ("[{task: sentiment, train_path: a, split_dev: -1}]", "multitask.task_files[0].split_dev", "0 (off) or positive"),
])
def test_bad_task_files_name_the_field(entries, field, why):
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, ["multitask.steps=10", "multitask.tasks=[squad2, sentiment]",
                                      f"multitask.task_files={entries}"])
    assert str(error.value).startswith(f"{field}: ") and why in str(error.value)


def _finished_run(folder, task="squad2"):
    """A run directory as a finished run leaves it: config.yaml (a 3-layer model) and metrics.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"task: {task}\nmodel: {{num_layers: 3, hidden_dim: 48, num_heads: 3}}\n")
    (folder / "metrics.json").write_text("{}")
    return folder


def test_a_teacher_named_by_its_run_takes_that_run_s_model_and_weights(tmp_path):
    run = _finished_run(tmp_path / "large")
    config = config_lib.load_config(overrides=[f"distillation.teachers=[{{run: {run}, weight: 2}}]"])
    resolved = config_lib.resolve_teacher_runs(config)
    teacher = resolved.distillation.teachers[0]
    assert (teacher.model.num_layers, teacher.model.hidden_dim, teacher.weight) == (3, 48, 2.0)
    assert teacher.checkpoint == str(run / "student" / "model.weights.h5")
    assert config_lib.resolve_teacher_runs(resolved) == resolved


@pytest.mark.parametrize("make, why", [
    (lambda path: path, "is not a road_tf run directory (no config.yaml)"),
    (lambda path: (_finished_run(path), (path / "metrics.json").unlink()), "has not finished (no metrics.json)"),
    (lambda path: _finished_run(path, task="mnli"), "trained task 'mnli', this run trains 'squad2'"),
    (lambda path: (_finished_run(path), (path / "config.yaml").write_text("")),
     "config.yaml: empty; not the config.yaml a road_tf run writes"),
])
def test_a_teacher_run_that_cannot_teach_is_refused(tmp_path, make, why):
    make(tmp_path / "teacher")
    config = config_lib.load_config(overrides=[f"distillation.teachers=[{{run: {tmp_path / 'teacher'}}}]"])
    with pytest.raises(ConfigError, match="distillation.teachers\\[0\\].run: ") as error:
        config_lib.resolve_teacher_runs(config)
    assert why in str(error.value)


def test_a_teacher_run_and_a_model_of_its_own_are_refused(tmp_path):
    """The run gives the teacher's model: another one beside it would be dropped without a word."""
    run = _finished_run(tmp_path / "large")
    config = config_lib.load_config(overrides=[f"distillation.teachers=[{{run: {run}, model: {{num_layers: 2}}}}]"])
    with pytest.raises(ConfigError) as error:
        config_lib.resolve_teacher_runs(config)
    assert str(error.value) == (f"distillation.teachers[0].model: the run {run} gives the teacher's model; leave "
                                "model out beside run")


def test_a_teacher_run_and_another_checkpoint_are_refused():
    with pytest.raises(ConfigError, match="leave checkpoint empty"):
        config_lib.load_config(overrides=["distillation.teachers=[{run: runs/a, checkpoint: b.weights.h5}]"])


def test_fields_added_later_stay_out_of_the_dump_at_their_defaults(tmp_path):
    """A run's folder is named by a hash of its config's dump: a field added later must not rename
    the runs made before it, so at its default it is not dumped; set, it is, and both round-trip."""
    default = config_lib.load_config()
    assert "projection_init" not in yaml.safe_load(config_lib.dump_yaml(default))["distillation"]
    identity = config_lib.load_config(overrides=[TEACHER, "distillation.hidden_loss=mse",
                                                 "distillation.projection_init=identity"])
    assert yaml.safe_load(config_lib.dump_yaml(identity))["distillation"]["projection_init"] == "identity"
    for config in (default, identity):
        dumped = tmp_path / "config.yaml"
        dumped.write_text(config_lib.dump_yaml(config))
        assert config_lib.load_config(str(dumped)) == config
    data = config_lib.to_dict(default.data)
    assert yaml.safe_load(config_lib.dump_yaml(default.data)) == {k: v for k, v in data.items() if k != "unanswerable_share"}
    assert "unanswerable_share" not in yaml.safe_load(config_lib.dump_yaml(default))["data"]
    shared = config_lib.load_config(overrides=["data.unanswerable_share=0.5"])
    assert yaml.safe_load(config_lib.dump_yaml(shared.data))["unanswerable_share"] == 0.5
    dumped.write_text(config_lib.dump_yaml(shared))
    assert config_lib.load_config(str(dumped)) == shared


@pytest.mark.parametrize("pairs, field", [
    (["train.steps_per_execution=2147483647"], "train.steps (400)"),
    (["train.steps=2", "train.steps_per_execution=100", "train.checkpoint_every=100"], "train.steps (2)"),
    (["train.steps_per_execution=8"], "train.checkpoint_every (100)"),
    (["train.steps_per_execution=4", "train.eval_every=10"], "train.eval_every (10)"),
    (["train.steps_per_execution=4", "multitask.steps=6"], "multitask.steps (6)"),
    (["train.steps_per_execution=4", "distillation.teachers=[{train_steps: 6}]"],
     "distillation.teachers[0].train_steps (6)"),
])
def test_steps_per_execution_divides_every_step_a_stage_stops_or_acts_at(pairs, field):
    """Keras runs whole executions: 2 steps at 100 per execution trained 100, 2**31 - 1 spun for hours."""
    with pytest.raises(ConfigError, match=f"^train.steps_per_execution: [0-9]+ does not divide {re.escape(field)}: "):
        config_lib.load_config(None, pairs)
    assert config_lib.load_config(None, ["train.steps_per_execution=4"]).train.steps_per_execution == 4


@pytest.mark.parametrize("field, largest", [("decode.n_best_size", 1000), ("export.window_group_size", 1024),
                                            ("train.trim_padding", 16384)])
def test_counts_that_would_overflow_tensorflow_after_training_are_refused(field, largest):
    """2**63 - 1 passed, and the run failed after training with 'TypeError: in user code' or 'Graph
    execution error' (int32 overflow in the decoder, the window groups or the padding cut)."""
    config_lib.load_config(None, [f"{field}={largest}"])
    for value in (largest + 1, 2**63 - 1):
        with pytest.raises(ConfigError, match=f"^{re.escape(field)}: must be .*{largest}\\], got {value}$"):
            config_lib.load_config(None, [f"{field}={value}"])


@pytest.mark.parametrize("field", ["distillation.temperature", "distillation.temperature_end"])
def test_kd_temperatures_whose_square_float32_cannot_hold_are_refused(field):
    """1e-30 passed and made every KD step's loss NaN (the run blamed train.learning_rate), 1e30 too:
    the loss divides by T and scales by T**2 in float32."""
    teacher = "distillation.teachers=[{}]"
    for value in (1e-18, 1e18):
        assert getattr(config_lib.load_config(None, [teacher, f"{field}={value}"]).distillation,
                       field.split(".")[1]) == value
    for value in (1e-30, 1e-19, 0, -2, 1e19, 1e30):
        with pytest.raises(ConfigError, match=f"^{re.escape(field)}: must be in \\[1e-18, 1e\\+18\\] .*, got "):
            config_lib.load_config(None, [teacher, f"{field}={value}"])


@pytest.mark.parametrize("given", ["1_0", "٣", "1e-٣", "0x10", "infinit"])
def test_a_float_field_reads_only_ascii_decimal_text_as_an_integer_field_does(given, tmp_path):
    """Python's float() took "1_0" as 10 and "٣" (an Arabic-Indic three) as 3, which train.steps refuses."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train:\n  learning_rate: {given}\n", encoding="utf-8")
    for load in (lambda: config_lib.load_config(None, [f"train.learning_rate={given}"]),
                 lambda: config_lib.load_config(recipe)):
        with pytest.raises(ConfigError, match=f"^train.learning_rate: expected a number, got {re.escape(repr(given))}$"):
            load()
    assert config_lib.load_config(None, ["train.learning_rate= 2.5E-3 "]).train.learning_rate == 2.5e-3


@pytest.mark.parametrize("pair", ["train.weight_decay=1e308", "train.learning_rate=1e-320", "train.learning_rate=4e38",
                                  "distillation.hidden_weight=-1e39", "decode.null_score_diff_threshold=1e300"])
def test_a_float_setting_float32_cannot_hold_is_refused(pair):
    """train.weight_decay=1e308 became an infinity in float32 and stopped the run at its first step
    blaming train.learning_rate; a learning rate of 1e-320 became 0 and trained nothing."""
    field, value = pair.split("=")
    with pytest.raises(ConfigError, match=f"^{re.escape(field)}: '{re.escape(value)}' is out of float32's range"):
        config_lib.load_config(None, [pair])


def test_float32_s_edges_are_kept():
    for edge in ("3.4e38", "1.2e-38", "0"):
        assert config_lib.load_config(None, ["train.weight_decay=" + edge]).train.weight_decay == float(edge)


@pytest.mark.parametrize("value, why", [
    ("!!int", "'' is not a valid !!int (IndexError: "), ("!!float", "'' is not a valid !!float (IndexError: "),
    ("!!bool x", "'x' is not a valid !!bool (KeyError: "), ("!!timestamp x", "'x' is not a valid !!timestamp "),
    ("!!set x", "expected a mapping node, but found scalar"), ("!!map [1]", "expected a mapping node, but found sequence"),
])
def test_a_tag_yaml_cannot_read_is_refused_by_line_not_a_traceback(value, why, tmp_path):
    """PyYAML's own constructors raised IndexError, KeyError, AttributeError or ValueError out of
    `--set train.steps=!!int` or a recipe's `jit_compile: !!bool x`: a traceback, exit 1."""
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(None, [f"train.steps={value}"])
    assert str(error.value).startswith("--set train.steps: not valid YAML (") and why in str(error.value)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train:\n  steps: {value}\n")
    with pytest.raises(ConfigError) as error:
        config_lib.load_config(recipe)
    assert str(error.value).startswith(f"{recipe}: not valid YAML (") and why in str(error.value)


def test_a_set_value_with_a_tag_yaml_does_not_define_stays_text():
    """Refusing every tag YAML could not build also refused `--set data.train_path=!data.json`."""
    made = config_lib.load_config(None, ["data.source=json", "data.train_path=!data.json", "export.model_name=!x"])
    assert (made.data.train_path, made.export.model_name) == ("!data.json", "!x")


def test_a_repeated_key_in_a_set_mapping_is_refused_as_in_a_recipe():
    """`--set 'train={steps: 5, steps: 6}'` was kept as text and refused as "expected a mapping"."""
    with pytest.raises(ConfigError, match="^--set train: not valid YAML \\(line 1: duplicate key 'steps'\\)$"):
        config_lib.load_config(None, ["train={steps: 5, steps: 6}"])


@pytest.mark.parametrize("value, shown", [("!!binary aGk=", "b'hi'"), ("!!set {a}", "{'a'}"),
                                          ("!!timestamp 2001-12-14", "datetime.date(2001, 12, 14)"), ("!!bool true", "True")])
def test_a_text_setting_refuses_a_tagged_value_that_is_no_text(value, shown):
    """export.model_name=!!binary aGk= exported a model named "b'hi'", !!set {a} one named "{'a'}"."""
    with pytest.raises(ConfigError, match=f"^export.model_name: expected a string, got {re.escape(shown)}$"):
        config_lib.load_config(None, [f"export.model_name={value}"])
    assert config_lib.load_config(None, ["export.model_name=!!int 5"]).export.model_name == "5"


@pytest.mark.parametrize("pairs, shown", [(["data=5", "data.skip_bad_records=true"],
                                           "data: set to '5' and, by a later setting, fields under it ['skip_bad_records']"),
                                          (["train.steps=5", "train.steps.x=1"],
                                           "train.steps: set to '5' and, by a later setting, fields under it ['x']")])
def test_fields_set_under_a_value_are_refused_not_merged_over_it(pairs, shown):
    """The later mapping replaced the value without a word, so the first setting was dropped."""
    with pytest.raises(ConfigError, match=f"^{re.escape(shown)}: set it one way$"):
        config_lib.load_config(None, pairs)


def test_fields_set_under_an_empty_recipe_section_are_merged(tmp_path):
    """`data:` with nothing under it is YAML's null: no value, so --set fills the section."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n")
    assert config_lib.load_config(recipe, ["data.skip_bad_records=true"]).data.skip_bad_records is True
