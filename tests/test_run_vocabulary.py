"""An encoder from a run folder or checkpoint folder must have been trained with data.vocab's pieces,
not only with as many pieces (`data.vocab.check_encoder_vocabularies`)."""

import json

import h5py
import pytest

from road_tf import cache_teacher, train
from road_tf.config import dump_yaml, load_config, resolve_teacher_runs
from road_tf.data.vocab import check_encoder_vocabularies, read_vocab, vocab_path
from road_tf.errors import ConfigError
from test_runs import tiny_args

PIECES = read_vocab(vocab_path("minilm"))


def vocab_file(path, pieces):
    path.write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return path


def swapped(first, second):
    """The MiniLM pieces with ids `first` and `second` exchanged: same size, other ids."""
    pieces = list(PIECES)
    pieces[first], pieces[second] = pieces[second], pieces[first]
    return pieces


def finished_run(folder, *pairs):
    """A folder that reads as a finished run of the config `pairs` give (config.yaml, metrics.json)."""
    folder.mkdir()
    (folder / "config.yaml").write_text(dump_yaml(load_config(None, pairs)))
    (folder / "metrics.json").write_text(json.dumps({"final": {}}))
    return folder


def test_a_run_trained_with_other_pieces_of_the_same_count_is_refused(tmp_path):
    other = vocab_file(tmp_path / "other.txt", swapped(2000, 2001))
    run = finished_run(tmp_path / "run", f"data.vocab={other}")
    with pytest.raises(ConfigError) as raised:
        check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}"]))
    assert str(raised.value) == (
        f"model.pretrained: the run {run} was trained with data.vocab {other} (30522 pieces), other pieces than this "
        f"run's data.vocab minilm (30522): id 2000 is {PIECES[2001]!r} there, {PIECES[2000]!r} here; set data.vocab "
        "to the vocabulary the encoder was trained with")
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}", f"data.vocab={other}"]))


def test_a_same_vocabulary_in_another_file_and_the_bundled_one_pass(tmp_path):
    copy = vocab_file(tmp_path / "copy.txt", PIECES)
    run = finished_run(tmp_path / "run", f"data.vocab={copy}")
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}"]))
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={finished_run(tmp_path / 'bundled')}"]))


def test_teacher_runs_and_checkpoint_folders_are_compared_too(tmp_path):
    longer = vocab_file(tmp_path / "longer.txt", PIECES + ["[extra]"])
    run = finished_run(tmp_path / "run", f"data.vocab={longer}")
    teacher = resolve_teacher_runs(load_config(None, [f"distillation.teachers=[{{run: {run}}}]"]))
    with pytest.raises(ConfigError, match=r"^distillation.teachers\[0\].run: the run .* \(30523 pieces\), .* "
                                          r"\(30522\): id 30522 is '\[extra\]' there, nothing here;"):
        check_encoder_vocabularies(teacher)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    vocab_file(checkpoint / "vocab.txt", swapped(5, 7))
    with pytest.raises(ConfigError, match=rf"^model.pretrained: the checkpoint's {checkpoint / 'vocab.txt'} \(30522 "
                                          r"pieces\), .*: id 5 is"):
        check_encoder_vocabularies(load_config(None, [f"model.pretrained={checkpoint}"]))
    (checkpoint / "vocab.txt").unlink()
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={checkpoint}"]))


def test_a_teacher_run_that_started_from_a_checkpoint_is_named_by_its_run(tmp_path):
    """Resolving a teacher's run copies the run's model section (its pretrained checkpoint folder) into
    the teacher: the run's data.vocab is what that teacher read, and the error names the run."""
    other = vocab_file(tmp_path / "other.txt", swapped(2000, 2001))
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    vocab_file(checkpoint / "vocab.txt", swapped(2000, 2001))
    run = finished_run(tmp_path / "run", f"data.vocab={other}", f"model.pretrained={checkpoint}")
    teacher = resolve_teacher_runs(load_config(None, [f"distillation.teachers=[{{run: {run}}}]"]))
    assert teacher.distillation.teachers[0].model.pretrained == str(checkpoint)
    with pytest.raises(ConfigError, match=r"^distillation.teachers\[0\].run: the run "):
        check_encoder_vocabularies(teacher)
    check_encoder_vocabularies(resolve_teacher_runs(load_config(None, [f"distillation.teachers=[{{run: {run}}}]",
                                                                   f"data.vocab={other}"])))


def test_the_minilm_under_another_vocabulary_of_its_size_is_refused(tmp_path):
    other = vocab_file(tmp_path / "other.txt", swapped(100, 101))
    with pytest.raises(ConfigError, match=r"^model.pretrained: the MiniLM's vocab.txt \(30522 pieces\), .*: id 100 is"):
        check_encoder_vocabularies(load_config(None, ["model.pretrained=minilm", f"data.vocab={other}"]))
    check_encoder_vocabularies(load_config(None, ["model.pretrained=minilm"]))


def test_unreadable_vocabularies_are_not_compared_and_broken_runs_are_named(tmp_path, caplog):
    gone = vocab_file(tmp_path / "gone.txt", swapped(2000, 2001))
    run = finished_run(tmp_path / "run", f"data.vocab={gone}")
    gone.unlink()
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}"]))
    assert ("model.pretrained: vocabulary not compared with data.vocab: the encoder's vocabulary: no vocabulary "
            f"file at {gone}") in caplog.text
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "vocab.txt").write_text("[PAD]\n[PAD]\n")
    check_encoder_vocabularies(load_config(None, [f"model.pretrained={checkpoint}"]))
    assert f"the encoder's vocabulary: {checkpoint / 'vocab.txt'}: line 2 repeats the piece '[PAD]'" in caplog.text
    (run / "metrics.json").unlink()
    with pytest.raises(ConfigError, match=r"^model.pretrained: the run .* has not finished"):
        check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}"]))
    (run / "metrics.json").write_text("{}")
    (run / "config.yaml").write_text("task: [")
    with pytest.raises(ConfigError, match=r"^model.pretrained: .*config.yaml"):
        check_encoder_vocabularies(load_config(None, [f"model.pretrained={run}"]))


def test_caching_teacher_logits_checks_too(tmp_path):
    other = vocab_file(tmp_path / "other.txt", swapped(2000, 2001))
    run = finished_run(tmp_path / "run", f"data.vocab={other}")
    (run / "student").mkdir()
    with h5py.File(run / "student" / "model.weights.h5", "w"):
        pass
    config = resolve_teacher_runs(load_config(None, [f"distillation.teachers=[{{run: {run}}}]"]))
    with pytest.raises(ConfigError, match=r"^distillation.teachers\[0\].run: .* id 2000 is"):
        cache_teacher.cache_teacher_logits(config, str(tmp_path / "cache.tfrecord"))


def test_train_stops_on_it_with_one_line_before_writing(tmp_path, capsys):
    other = vocab_file(tmp_path / "other.txt", swapped(2000, 2001))
    run = finished_run(tmp_path / "run", f"data.vocab={other}")
    with pytest.raises(SystemExit) as exited:
        train.main(tiny_args(tmp_path, f"model.pretrained={run}", "export.enabled=false", output_dir=tmp_path / "out"))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "id 2000 is" in err[0]
    assert not (tmp_path / "out").exists()
