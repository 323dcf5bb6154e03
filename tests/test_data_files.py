"""Opening data files: folders and devices are refused with the file named (reading /dev/zero would
fill memory), while pipes such as `--data <(zcat dev.json.gz)` are read, gzipped or not. Writing
one replaces a regular file (through a link to it), never a pipe or device."""

import gzip
import json
import logging
import os
import pathlib
import threading

import pytest

from road_tf.data import glue
from road_tf import evaluate
from road_tf.data.squad import read_squad_json
from road_tf.errors import DataError, RoadError
from road_tf.files import (check_writable_dir, check_writable_file, fixed_temp, save_weights, versions, write_atomic,
                           write_data_files)

SQUAD = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Ada wrote it.", "qas": [
    {"id": "q1", "question": "Who wrote it?", "answers": [{"text": "Ada", "answer_start": 0}],
     "is_impossible": False}]}]}]}
QQP = b"id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n5\t1\t2\tWhy?\tHow come?\t1\n"


def _fifo_fed_with(tmp_path, payload):
    """A named pipe in tmp_path and the thread that writes `payload` into it once a reader opens it."""
    path = tmp_path / "pipe"
    os.mkfifo(path)

    def feed():
        with open(path, "wb") as handle:
            handle.write(payload)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return path, writer


@pytest.mark.parametrize("read", [read_squad_json, glue.read_qqp_tsv], ids=["json", "tsv"])
def test_devices_and_folders_are_refused_naming_the_path(tmp_path, read):
    with pytest.raises(DataError) as caught:
        read("/dev/zero")
    assert str(caught.value) == "/dev/zero: a device, not a file"
    with pytest.raises(DataError) as caught:
        read(tmp_path)
    assert str(caught.value) == f"{tmp_path}: a folder, not a file"


@pytest.mark.parametrize("read", [read_squad_json, glue.read_qqp_tsv], ids=["json", "tsv"])
def test_a_file_whose_first_bytes_cannot_be_read_is_named(read):
    """/proc/self/mem opens but fails on read (EIO, as a failing disk or network file system would):
    the first read, which tells gzip from plain text, escaped as an OSError traceback."""
    with pytest.raises(DataError) as caught:
        read("/proc/self/mem")
    assert str(caught.value) == "/proc/self/mem: cannot read file: Input/output error"


def test_a_name_too_long_is_shown_cut_short(tmp_path):
    """A 10,000-character name was echoed whole in the one-line error."""
    with pytest.raises(RoadError) as caught:
        check_writable_file(tmp_path / ("a" * 10_000), "--output")
    assert "holds a name longer than 255 bytes" in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_squad_json_is_read_from_a_pipe(tmp_path, compress):
    payload = json.dumps(SQUAD).encode("utf-8")
    path, writer = _fifo_fed_with(tmp_path, gzip.compress(payload) if compress else payload)
    examples = read_squad_json(path)
    writer.join(timeout=10)
    assert [(example.qid, example.answers[0].text) for example in examples] == [("q1", "Ada")]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_tsv_is_read_from_a_pipe_whose_gzip_is_recognised_by_its_bytes(tmp_path, compress):
    path, writer = _fifo_fed_with(tmp_path, gzip.compress(QQP) if compress else QQP)
    examples = glue.read_qqp_tsv(path)
    writer.join(timeout=10)
    assert [(example.guid, example.label) for example in examples] == [("5", 1)]


def test_writing_through_a_link_replaces_the_file_it_names(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    check_writable_file(link, "--output")
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


@pytest.mark.parametrize("length", [245, 246, 255])
def test_a_file_whose_name_is_near_the_longest_is_written(tmp_path, length):
    """The temporary file's name (".NAME." and 8 random characters) went past 255 bytes: an OSError
    after the work was done, e.g. after predict had answered every question."""
    path = tmp_path / ("é" * ((length - 5) // 2) + "x" * ((length - 5) % 2) + ".json")
    assert len(os.fsencode(path.name)) == length
    write_atomic(path, "{}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and path.read_text() == "{}"


class _FailingSave:
    """A model whose save_weights writes part of a file, then fails (a full disk, a kill)."""

    def save_weights(self, filepath):
        with open(filepath, "wb") as stream:
            stream.write(b"half")
        raise OSError("No space left on device")


class _Save:
    def __init__(self):
        self.written = []

    def save_weights(self, filepath):
        assert filepath.endswith(".weights.h5")  # Keras refuses other names
        self.written.append(filepath)
        with open(filepath, "wb") as stream:
            stream.write(b"new weights")


@pytest.mark.parametrize("length", [20, 255])
def test_weights_are_saved_through_a_temporary_file(tmp_path, length):
    """A failed save leaves the previous weights and no temporary file (stage weights, the best
    weights and encoders were saved in place: a kill left half a file that a resumed run or
    model.pretrained=runs/X read); a finished one replaces them, also at the longest file name."""
    path = tmp_path / ("w" * (length - len(".weights.h5")) + ".weights.h5")
    path.write_bytes(b"old weights")
    with pytest.raises(OSError, match="No space left"):
        save_weights(_FailingSave(), path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and path.read_bytes() == b"old weights"
    model = _Save()
    save_weights(model, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and path.read_bytes() == b"new weights"
    assert path.stat().st_mode & 0o777 == 0o644
    assert model.written == [str(fixed_temp(path, ".weights.h5"))]  # one name: killed saves cannot pile up


def test_weights_are_saved_through_a_symbolic_link_into_the_file_it_names(tmp_path):
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "model.weights.h5"
    target.write_bytes(b"old weights")
    link = tmp_path / "model.weights.h5"
    link.symlink_to(target)
    save_weights(_Save(), link)
    assert link.is_symlink() and target.read_bytes() == b"new weights"


def test_pipes_and_devices_are_never_replaced_by_a_write(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in (pipe, "/dev/null"):
        with pytest.raises(RoadError, match="is a device or pipe, not a file name"):
            check_writable_file(path, "--output")
        with pytest.raises(RoadError, match="is a device or pipe, not a file to write"):
            write_atomic(path, "x")
    assert not pipe.is_file() and os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.parametrize("below", ["train.json", "a/b/train.json"])
def test_a_file_where_the_folder_of_a_write_goes_is_named(tmp_path, below):
    """It was a FileExistsError (or, deeper down, a NotADirectoryError) from mkdir, a traceback, e.g.
    for a cache entry's folder."""
    (tmp_path / "split-1").write_text("x")
    with pytest.raises(RoadError) as caught:
        write_atomic(tmp_path / "split-1" / below, "{}")
    assert str(caught.value) == f"{tmp_path}/split-1 is a file, not a folder; move it away"
    assert (tmp_path / "split-1").read_text() == "x"


def test_check_writable_file_stats_the_path_once(tmp_path, monkeypatch):
    """check_writable_file asked what stands at the path, then called os.stat on it again to find a loop of links."""
    (tmp_path / "file.json").write_text("old")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: stats.append(os.fspath(path))
                        or real_stat(path, *args, **kwargs))
    for name in ("file.json", "new.json"):
        check_writable_file(tmp_path / name, "--output")
    with pytest.raises(RoadError, match=r"^--output .*/loop_a: cannot write there \(a loop of symbolic links\)$"):
        check_writable_file(tmp_path / "loop_a", "--output")
    assert [path for path in stats if path.startswith(f"{tmp_path}/")] == [
        f"{tmp_path}/{name}" for name in ("file.json", "new.json", "loop_a")]


def test_an_output_folder_behind_a_dangling_or_looping_link_is_refused(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    for name in ("dangling", "loop_a"):
        with pytest.raises(RoadError, match="is a symbolic link to nothing \\(a missing target or a loop\\)$"):
            check_writable_dir(tmp_path / name / "run", "--output-dir")
    with pytest.raises(RoadError, match="^--output-dir /dev/null/run: /dev/null is a device or pipe, not a folder$"):
        check_writable_dir("/dev/null/run", "--output-dir")


def test_a_model_folder_that_is_a_file_or_device_is_refused(tmp_path):
    (tmp_path / "model").write_text("")
    (tmp_path / "model_dir").mkdir()
    (tmp_path / "model_dir" / "7").mkdir()
    assert versions(tmp_path / "model_dir") == {7: tmp_path / "model_dir" / "7"} and versions(tmp_path / "none") == {}
    for path, kind in ((tmp_path / "model", "a file"), ("/dev/null", "a device or pipe")):
        with pytest.raises(RoadError, match=f"^{path}: {kind}, not a model folder of numbered versions$"):
            versions(path)


@pytest.mark.parametrize("finished, version", [(("007", "7"), "007"), (("7",), "7"), (("007",), "007"), ((), "007")])
def test_of_two_names_of_one_version_the_finished_one_is_it(tmp_path, caplog, finished, version):
    """"007" and "7" both name version 7: the one holding saved_model.pb, else the first in sorted
    order (the folder the devserver serves), with a warning naming the other."""
    for name in ("007", "7"):
        (tmp_path / name).mkdir()
        if name in finished:
            (tmp_path / name / "saved_model.pb").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert versions(tmp_path) == {7: tmp_path / version}
    other = "7" if version == "007" else "007"
    assert caplog.messages == [f"{tmp_path}: ignoring {other!r}: {version!r} names version 7 too"]


def test_a_folder_that_cannot_be_looked_at_on_the_way_up_is_one_line(tmp_path, monkeypatch):
    """`locked/sub/../x` where `locked` may not be searched (a user without rights; stood in for by
    os.stat failing with EACCES, since the tests may run as root) is a RoadError, not a traceback."""
    locked = tmp_path / "locked"
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    for check in (check_writable_dir, check_writable_file):
        with pytest.raises(RoadError, match=r"^--output .*/locked/sub/\.\./x: cannot look at .*/locked/sub "
                                            r"\(Permission denied\)$"):
            check(locked / "sub" / ".." / "x", "--output")


@pytest.mark.parametrize("check", [check_writable_dir, check_writable_file])
def test_a_path_that_goes_up_out_of_an_existing_folder_is_taken(tmp_path, check):
    (tmp_path / "work").mkdir()
    check(tmp_path / "work" / ".." / "out", "--output")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["work"]


@pytest.mark.parametrize("lines, expected", [
    (b"a\t1\n   \nb\t0\n", {"a": 1, "b": 0}), (b"a\t1\nb\t0\n \t \n", {"a": 1, "b": 0}),
    (b"guid\tlabel \na\t1\n", {"a": 1}), (b" guid \t label\r\na\t1\r\n", {"a": 1})])
def test_gold_tsv_skips_blank_lines_and_reads_a_header_with_blanks_around_its_names(tmp_path, lines, expected):
    path = tmp_path / "gold.tsv"
    path.write_bytes(lines)
    assert evaluate._read_gold_labels(str(path), 2) == expected


def test_files_written_together_are_all_kept_as_they_were_when_one_write_fails(tmp_path, monkeypatch):
    """predict writes its answers and their no-answer probabilities together: a failure writing the
    second (a full disk) must not leave new answers beside old probabilities."""
    answers, probabilities = tmp_path / "preds.json", tmp_path / "na.json.gz"
    write_data_files({answers: "old answers", probabilities: "old probabilities"})
    writes = []
    real_write = pathlib.Path.write_bytes

    def write_then_fail(path, data):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_data_files({answers: "new answers", probabilities: "new probabilities"})
    monkeypatch.undo()
    assert answers.read_text() == "old answers"
    assert gzip.decompress(probabilities.read_bytes()).decode() == "old probabilities"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["na.json.gz", "preds.json"]
