"""Malformed inputs for the command-line fuzz tests: data files and settings, each a `Case`.

A case holds the files to write into an empty folder, the CLI arguments (with `{dir}` standing for
that folder) and a fragment the one-line error must contain (the bad file's name or the field).
Every case is invalid by construction, so the CLI must refuse it. Also stand-ins that pass a
command's checks but are never loaded: a finished run (`fake_run`) and a SavedModel version
(`fake_saved_model`).
"""

import copy
import dataclasses
import gzip
import json
import typing

from road_tf import config as config_lib

MISSING = object()
CONTEXT = "Ann met Bob in Paris in 1999."
PREDICTIONS = {"q1": "Paris", "q2": ""}
TRAIN_ARGS = ("--output-dir", "{dir}/run", "--set", "export.base_dir={dir}/models", "--set", "data.cache_dir={dir}/cache")


@dataclasses.dataclass(frozen=True)
class Case:
    """One malformed input.

    Attributes:
        name: an ASCII id for the test report.
        files: {file name: bytes} to write into the case folder before the run.
        argv: the CLI arguments; "{dir}" is replaced by the case folder.
        expect: a fragment the error line must contain ("{dir}" replaced too).
    """

    name: str
    files: dict
    argv: tuple
    expect: str

    def materialize(self, folder):
        """Writes the files into `folder`; returns (argv, expected fragment) with `{dir}` filled in."""
        for name, payload in self.files.items():
            (folder / name).write_bytes(payload)
        return [arg.replace("{dir}", str(folder)) for arg in self.argv], self.expect.replace("{dir}", str(folder))


def squad_doc():
    """A valid SQuAD 2.0 document: one article, one paragraph, an answerable and an unanswerable question."""
    return {"version": "v2.0", "data": [{"title": "Meetings", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "q1", "question": "Where did Ann meet Bob?", "answers": [{"text": "Paris", "answer_start": 15}],
         "is_impossible": False},
        {"id": "q2", "question": "Why did they meet?", "answers": [], "is_impossible": True},
    ]}]}]}


def encode(document):
    """JSON bytes; lone surrogates become `\\udXXX` escapes, as a hostile file would hold them."""
    return json.dumps(document).encode("ascii")


GOOD_SQUAD = encode(squad_doc())

# Where each field lives in `squad_doc()`, as a path of keys and indices.
WHERE = {
    "top": (),
    "article": ("data", 0),
    "paragraph": ("data", 0, "paragraphs", 0),
    "question": ("data", 0, "paragraphs", 0, "qas", 0),
    "answer": ("data", 0, "paragraphs", 0, "qas", 0, "answers", 0),
}
NON_STRINGS = [("null", None), ("0", 0), ("2.5", 2.5), ("true", True), ("list", []), ("object", {}),
               ("list-of-str", ["x"])]
BAD_TEXTS = [("empty", ""), ("spaces", "   "), ("tab-newline", "\t\n"), ("lone-surrogate", "\ud800"),
             ("inner-surrogate", "Where\udfff?")]
NOT_LISTS = [("null", None), ("0", 0), ("str", "x"), ("object", {}), ("true", True)]
BAD_ITEMS = [("null-item", [None]), ("str-item", ["x"]), ("list-item", [[]]), ("number-item", [0])]
# Field -> (where, bad values); a value MISSING deletes the field.
FIELD_VALUES = {
    "data": ("top", [("missing", MISSING), ("empty", [])] + NOT_LISTS + BAD_ITEMS),
    "paragraphs": ("article", [("missing", MISSING), ("empty", [])] + NOT_LISTS + BAD_ITEMS),
    "title": ("article", [(label, value) for label, value in NON_STRINGS if value is not None]
              + [("null", None), ("lone-surrogate", "T\ud800")]),
    "context": ("paragraph", [("missing", MISSING), ("other-text", "Somewhere else entirely.")] + NON_STRINGS
                + BAD_TEXTS),
    "qas": ("paragraph", [("missing", MISSING), ("empty", [])] + NOT_LISTS + BAD_ITEMS),
    "id": ("question", [("missing", MISSING), ("duplicate", "q2")] + NON_STRINGS + BAD_TEXTS[:4]),
    "question": ("question", [("missing", MISSING)] + NON_STRINGS + BAD_TEXTS),
    "answers": ("question", [("missing", MISSING), ("none", [])] + NOT_LISTS + BAD_ITEMS),
    "is_impossible": ("question", [("str", "yes"), ("1", 1), ("0", 0), ("null", None), ("list", []),
                                   ("true-with-answers", True)]),
    "text": ("answer", [("missing", MISSING), ("other", "Rome"), ("lower-case", "paris")] + NON_STRINGS
             + BAD_TEXTS[:4]),
    "answer_start": ("answer", [("missing", MISSING), ("null", None), ("str", "15"), ("float", 15.0),
                                ("true", True), ("list", []), ("negative", -1), ("off-by-one", 14), ("after", 16),
                                ("past-end", 10**6), ("huge", 10**30), ("fraction", 2.5)]),
}


def _mutated(where, key, value):
    """`squad_doc()` with `key` of the object at `where` set to `value` (deleted for MISSING)."""
    document = squad_doc()
    target = document
    for step in WHERE[where]:
        target = target[step]
    if value is MISSING:
        del target[key]
    else:
        target[key] = value
    return document


def _structural_docs():
    """(label, document) pairs broken above the field level."""
    article_qas = squad_doc()
    article_qas["data"][0]["qas"] = [{"id": "q9", "question": "Who?", "answers": [], "is_impossible": True}]
    two_paragraphs = squad_doc()
    second = copy.deepcopy(two_paragraphs["data"][0]["paragraphs"][0])
    two_paragraphs["data"][0]["paragraphs"].append(second)
    answers_of = squad_doc()
    answers_of["data"][0]["paragraphs"][0]["qas"][0]["answers"].append({"text": "Bob", "answer_start": 0})
    return [("top-is-list", []), ("top-is-str", "data"), ("top-is-null", None), ("top-is-number", 3),
            ("no-data-key", {"version": "v2.0"}), ("qas-at-article-level", article_qas),
            ("duplicate-ids-across-paragraphs", two_paragraphs), ("second-answer-mismatch", answers_of)]


def _squad_bytes():
    """(label, file name, bytes) of SQuAD files broken at the byte level."""
    good = GOOD_SQUAD
    cuts = [1, 10, len(good) // 4, len(good) // 2, 3 * len(good) // 4, len(good) - 1]
    utf8_breakers = [("byte-ff", b"\xff"), ("bad-continuation", b"\xc3\x28"), ("cesu-surrogate", b"\xed\xa0\x80"),
                     ("latin1-e-acute", b"\xe9"), ("overlong-slash", b"\xc0\xaf")]
    insert_at = good.index(b"Paris in") + 5
    cases = [("empty", "bad.json", b""), ("whitespace", "bad.json", b" \n\t "), ("trailing-garbage", "bad.json", good + b"x"),
             ("single-quotes", "bad.json", good.replace(b'"', b"'")),
             ("nan-answer-start", "bad.json", good.replace(b'"answer_start": 15', b'"answer_start": NaN')),
             ("infinity-answer-start", "bad.json", good.replace(b'"answer_start": 15', b'"answer_start": Infinity')),
             ("utf16", "bad.json", json.dumps(squad_doc()).encode("utf-16")),
             ("deep-lists", "bad.json", b"[" * 100_000), ("deep-objects", "bad.json", b'{"a":' * 100_000),
             ("deep-inside-data", "bad.json", b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
             ("gz-not-gzip", "bad.json.gz", good), ("gz-garbage", "bad.json.gz", b"\x1f\x8b" + b"\x00garbage" * 8),
             ("gz-truncated", "bad.json.gz", gzip.compress(good)[:-12]),
             ("gz-of-garbage", "bad.json.gz", gzip.compress(b"\x00\x01\x02 not json"))]
    cases += [(f"truncated-at-{cut}", "bad.json", good[:cut]) for cut in cuts]
    cases += [(f"not-utf8-{label}", "bad.json", good[:insert_at] + raw + good[insert_at:]) for label, raw in utf8_breakers]
    return cases


def squad_files():
    """(label, file name, bytes) of every malformed SQuAD file (each holds a problem the reader must refuse)."""
    files = []
    for key, (where, values) in FIELD_VALUES.items():
        files += [(f"{where}.{key}={label}", "bad.json", encode(_mutated(where, key, value))) for label, value in values]
    files += [(label, "bad.json", encode(document)) for label, document in _structural_docs()]
    return files + _squad_bytes()


def train_squad_cases():
    """Malformed SQuAD training files given to `road_tf.train`, plus an over-long context."""
    cases = [Case(f"train-squad-{label}", {name: payload, "good.json": GOOD_SQUAD},
                  TRAIN_ARGS + ("--set", "data.source=json", "--set", f"data.train_path={{dir}}/{name}",
                                "--set", "data.dev_path={dir}/good.json"), name)
             for label, name, payload in squad_files()]
    long_doc = squad_doc()
    long_doc["data"][0]["paragraphs"][0]["context"] = CONTEXT + " filler" * 20_000
    cases.append(Case("train-squad-context-over-default-limit", {"bad.json": encode(long_doc), "good.json": GOOD_SQUAD},
                      TRAIN_ARGS + ("--set", "data.source=json", "--set", "data.train_path={dir}/bad.json",
                                    "--set", "data.dev_path={dir}/good.json"), "max_context_bytes"))
    cases.append(Case("train-squad-context-over-set-limit", {"good.json": GOOD_SQUAD},
                      TRAIN_ARGS + ("--set", "data.source=json", "--set", "data.train_path={dir}/good.json",
                                    "--set", "data.dev_path={dir}/good.json", "--set", "data.max_context_bytes=20"),
                      "good.json: record q1"))
    return cases


def evaluate_squad_cases():
    """Malformed SQuAD data files given to `road_tf.evaluate squad2`."""
    return [Case(f"evaluate-squad-{label}", {name: payload, "preds.json": encode(PREDICTIONS)},
                 ("squad2", f"{{dir}}/{name}", "{dir}/preds.json"), name)
            for label, name, payload in squad_files()]


TSV_LAYOUTS = {
    "mnli": ("pairID\tsentence1\tsentence2\tgold_label", ["p1\tA man sleeps.\tA person rests.\tentailment",
                                                           "p2\tA dog runs.\tA cat sits.\tcontradiction"],
             "gold_label", "entailment"),
    "qqp": ("id\tquestion1\tquestion2\tis_duplicate", ["1\tHow to cook?\tHow do I cook?\t1",
                                                       "2\tWhy is the sky blue?\tWhat is rain?\t0"],
            "is_duplicate", "1"),
    "sentiment": ("sentence\tlabel", ["a fine film\t1", "a dull film\t0"], "label", "1"),
}


def _tsv(header, rows):
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def _tsv_variants(task):
    """(label, file name, bytes) of malformed TSV files for one task's layout."""
    header, rows, label_column, good_label = TSV_LAYOUTS[task]
    fields = rows[0].split("\t")

    def with_first(index, value):
        """The good file with field `index` of its first record replaced by `value`."""
        changed = list(fields)
        changed[index] = value
        return _tsv(header, ["\t".join(changed), *rows[1:]])

    label_index = header.split("\t").index(label_column)
    text_indices = [i for i, name in enumerate(header.split("\t")) if name not in (label_column, "pairID", "id")]
    variants = [
        ("empty-file", "bad.tsv", b""), ("blank-lines-only", "bad.tsv", b"\n\n\n"),
        ("header-only", "bad.tsv", _tsv(header, [])),
        ("too-few-fields", "bad.tsv", _tsv(header, ["\t".join(fields[:-1]), *rows[1:]])),
        ("too-many-fields", "bad.tsv", _tsv(header, ["\t".join(fields + ["extra"]), *rows[1:]])),
        ("unknown-label", "bad.tsv", with_first(label_index, "maybe")),
        ("blank-label", "bad.tsv", with_first(label_index, "")),
        ("label-with-space", "bad.tsv", with_first(label_index, good_label + " ")),
        ("row-not-utf8", "bad.tsv", _tsv(header, rows) + b"\xff\xfe\t\xff\n"),
        ("gz-garbage", "bad.tsv.gz", b"\x1f\x8b" + b"junk" * 10),
        ("gz-truncated", "bad.tsv.gz", gzip.compress(_tsv(header, rows * 50))[:-20]),
    ]
    variants += [(f"blank-text-{i}", "bad.tsv", with_first(i, "  ")) for i in text_indices]
    if task != "sentiment":
        variants += [
            ("missing-label-column", "bad.tsv", _tsv("\t".join(header.split("\t")[:-1]), ["\t".join(fields[:-1])])),
            ("repeated-column", "bad.tsv", _tsv(header + "\t" + header.split("\t")[1], [rows[0] + "\tx"])),
            ("header-not-utf8", "bad.tsv", b"\xff" + _tsv(header, rows)),
            ("blank-id", "bad.tsv", with_first(0, "")),
            ("whitespace-id", "bad.tsv", with_first(0, " ")),
            ("duplicate-id", "bad.tsv", _tsv(header, [rows[0], rows[0].replace(fields[1], "Another text.")])),
        ]
    return variants


def train_tsv_cases():
    """Malformed MNLI, QQP and sentiment training files given to `road_tf.train`."""
    cases = []
    for task, (header, rows, _, _) in TSV_LAYOUTS.items():
        good = _tsv(header, rows)
        for label, name, payload in _tsv_variants(task):
            cases.append(Case(f"train-{task}-{label}", {name: payload, "good.tsv": good},
                              TRAIN_ARGS + ("--set", f"task={task}", "--set", "data.source=json",
                                            "--set", f"data.train_path={{dir}}/{name}",
                                            "--set", "data.dev_path={dir}/good.tsv"), name))
        cases.append(Case(f"train-{task}-text-over-limit", {"good.tsv": good},
                          TRAIN_ARGS + ("--set", f"task={task}", "--set", "data.source=json", "--set",
                                        "data.train_path={dir}/good.tsv", "--set", "data.dev_path={dir}/good.tsv",
                                        "--set", "data.max_context_bytes=8"), "max_context_bytes"))
    return cases


def _evaluate_mapping_cases(prefix, argv, file_name, others, bad_values, broken_files=True):
    """Cases that put each bad value (or a broken file) in the JSON mapping `file_name`."""
    cases = [Case(f"{prefix}-{label}", {**others, file_name: payload}, argv, file_name)
             for label, payload in bad_values]
    if broken_files:
        cases += [Case(f"{prefix}-file-{label}", {**others, file_name: payload}, argv, file_name) for label, payload in [
            ("not-json", b"{'q1': 'x'}"), ("truncated", b'{"q1": '), ("empty", b""), ("list", b'["x"]'),
            ("string", b'"x"'), ("null", b"null"), ("not-utf8", b'{"q1": "\xff"}'), ("deep", b"[" * 100_000),
            ("deep-value", b'{"q1": ' + b"[" * 100_000)]]
    return cases


def evaluate_file_cases():
    """Malformed predictions, no-answer probabilities and classification files for `road_tf.evaluate`."""
    squad = {"data.json": GOOD_SQUAD}
    cases = _evaluate_mapping_cases(
        "evaluate-predictions", ("squad2", "{dir}/data.json", "{dir}/preds.json"), "preds.json", squad,
        [("value-number", b'{"q1": 3, "q2": ""}'), ("value-null", b'{"q1": null}'), ("value-list", b'{"q1": ["Paris"]}'),
         ("value-bool", b'{"q1": true}'), ("no-known-id", b'{"zz": "Paris"}')])
    na_values = [("7.5", b"7.5"), ("minus-3", b"-3"), ("nan", b"NaN"), ("infinity", b"Infinity"),
                 ("minus-infinity", b"-Infinity"), ("just-over-1", b"1.0000001"), ("just-under-0", b"-1e-9"),
                 ("string", b'"0.5"'), ("true", b"true"), ("null", b"null"), ("list", b"[0.5]")]
    cases += _evaluate_mapping_cases(
        "evaluate-na-probs", ("squad2", "{dir}/data.json", "{dir}/preds.json", "--na-probs", "{dir}/na.json"), "na.json",
        {**squad, "preds.json": encode(PREDICTIONS)},
        [(label, b'{"q1": ' + raw + b', "q2": 0.5}') for label, raw in na_values] + [("missing-id", b'{"q1": 0.5}')])
    gold_tsv_rows = [("label-7", "a\t7\nb\t0\n"), ("label-minus-4", "a\t-4\nb\t0\n"), ("label-x", "a\tx\nb\t0\n"),
                     ("label-float", "a\t1.0\nb\t0\n"), ("label-superscript", "a\t\u00b2\nb\t0\n"),
                     ("duplicate-guid", "a\t1\na\t0\n"), ("one-field", "a\t1\nb\n"), ("three-fields", "a\t1\t2\n"),
                     ("blank-guid", "\t1\nb\t0\n"), ("header-only", "guid\tlabel\n"), ("empty", "")]
    classification = ("classification", "{dir}/gold.tsv", "{dir}/cpreds.json")
    good_preds = {"cpreds.json": b'{"a": 1, "b": 0}'}
    cases += [Case(f"evaluate-gold-tsv-{label}", {"gold.tsv": text.encode("utf-8"), **good_preds}, classification,
                   "gold.tsv") for label, text in gold_tsv_rows]
    cases.append(Case("evaluate-gold-tsv-not-utf8", {"gold.tsv": b"a\t1\n\xff\t0\n", **good_preds}, classification,
                      "gold.tsv"))
    label_values = [("7", b"7"), ("minus-4", b"-4"), ("string", b'"1"'), ("float", b"1.0"), ("true", b"true"),
                    ("null", b"null"), ("2-of-2-classes", b"2")]
    cases += _evaluate_mapping_cases(
        "evaluate-gold-json", ("classification", "{dir}/gold.json", "{dir}/cpreds.json"), "gold.json", good_preds,
        [(label, b'{"a": ' + raw + b', "b": 0}') for label, raw in label_values])
    cases += _evaluate_mapping_cases(
        "evaluate-class-predictions", classification, "cpreds.json", {"gold.tsv": b"a\t1\nb\t0\n"},
        [(label, b'{"a": ' + raw + b', "b": 0}') for label, raw in label_values] + [("missing-guid", b'{"a": 1}')])
    cases.append(Case("evaluate-class-predictions-3-of-3-classes", {"gold.tsv": b"a\t1\nb\t2\n",
                                                                    "cpreds.json": b'{"a": 3, "b": 0}'},
                      classification + ("--num-classes", "3"), "cpreds.json"))
    return cases


def data_cases():
    """Every malformed data-file case, for `road_tf.train` and `road_tf.evaluate`."""
    return train_squad_cases() + evaluate_squad_cases() + train_tsv_cases() + evaluate_file_cases()


# ---- settings ----

NON_FINITE = ["inf", "-inf", "nan", ".inf", "-.inf", ".nan", "1e400", "-1e400", "abc", "true", "[1]", "{a: 1}"]
BAD_INTS = ["99999999999999999999999", "-99999999999999999999999", "\u00b2", "1.5", "abc", "true", "[1]", "1e3"]
BAD_BOOLS = ["maybe", "2", "[]", "yes please"]
BAD_STRINGS = [("nul", "a\x00b"), ("lone-surrogate", "\udcff")]


def config_fields(cls=config_lib.Config, prefix=""):
    """(dotted name, type) of every scalar field under dataclass `cls` (tuples of records are skipped)."""
    found = []
    for field, annotation in typing.get_type_hints(cls).items():
        name = f"{prefix}{field}"
        if dataclasses.is_dataclass(annotation):
            found += config_fields(annotation, f"{name}.")
        elif annotation in (int, float, bool, str):
            found.append((name, annotation))
    return found


def _set_cases(name, values, expect=None):
    return [Case(f"set-{name}={label}", {}, TRAIN_ARGS + ("--set", f"{name}={value}"), expect or name)
            for label, value in values]


def generated_setting_cases():
    """A bad value for every scalar field of the config, by type."""
    cases = []
    for name, annotation in config_fields():
        if annotation is float:
            cases += _set_cases(name, [(value, value) for value in NON_FINITE])
        elif annotation is int:
            cases += _set_cases(name, [(value.encode("unicode_escape").decode(), value) for value in BAD_INTS])
        elif annotation is bool:
            cases += _set_cases(name, [(value, value) for value in BAD_BOOLS])
        else:
            cases += _set_cases(name, BAD_STRINGS)
    return cases


VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n".encode("utf-8")
SPECIFIC_SETTINGS = [
    # (name, files, extra argv, expected fragment)
    ("seed-minus-1", {}, ("--set", "train.seed=-1"), "train.seed"),
    ("seed-2-pow-40", {}, ("--set", f"train.seed={2**40}"), "train.seed"),
    ("steps-huge", {}, ("--set", "train.steps=99999999999999999999999"), "train.steps"),
    ("steps-2-pow-31", {}, ("--set", f"train.steps={2**31}"), "train.steps"),
    ("learning-rate-inf", {}, ("--set", "train.learning_rate=inf"), "train.learning_rate"),
    ("learning-rate-zero", {}, ("--set", "train.learning_rate=0"), "train.learning_rate"),
    ("multitask-learning-rate-negative", {}, ("--set", "multitask.learning_rate=-1"), "multitask.learning_rate"),
    ("weight-decay-inf", {}, ("--set", "train.weight_decay=inf"), "train.weight_decay"),
    ("layer-lr-decay-zero", {}, ("--set", "train.layer_lr_decay=0"), "train.layer_lr_decay"),
    ("layer-lr-decay-above-one", {}, ("--set", "train.layer_lr_decay=1.5"), "train.layer_lr_decay"),
    ("temperature-inf", {}, ("--set", "distillation.temperature=inf"), "distillation.temperature"),
    ("null-threshold-nan", {}, ("--set", "export.null_score_diff_threshold=nan"), "export.null_score_diff_threshold"),
    ("model-name-dotdot", {}, ("--set", "export.model_name=.."), "export.model_name"),
    ("model-name-dot", {}, ("--set", "export.model_name=."), "export.model_name"),
    ("model-name-escape", {}, ("--set", "export.model_name=../escape"), "export.model_name"),
    ("model-name-slash", {}, ("--set", "export.model_name=a/b"), "export.model_name"),
    ("model-name-backslash", {}, ("--set", "export.model_name=a\\b"), "export.model_name"),
    ("model-name-hidden", {}, ("--set", "export.model_name=.tmp-1"), "export.model_name"),
    ("model-name-newline", {}, ("--set", 'export.model_name="a\\nb"'), "export.model_name"),
    ("model-name-too-long", {}, ("--set", "export.model_name=" + "m" * 300), "export.model_name"),
    ("base-dir-proc", {}, ("--set", "export.base_dir=/proc/nope"), "export.base_dir"),
    ("base-dir-sys", {}, ("--set", "export.base_dir=/sys/nope"), "export.base_dir"),
    ("base-dir-is-file", {"occupied": b"x"}, ("--set", "export.base_dir={dir}/occupied"), "export.base_dir"),
    ("base-dir-under-file", {"occupied": b"x"}, ("--set", "export.base_dir={dir}/occupied/models"), "export.base_dir"),
    ("model-dir-is-file", {"models": b"x"}, ("--set", "export.model_name=models", "--set", "export.base_dir={dir}"),
     "export.base_dir"),
    ("output-dir-is-file", {"occupied": b"x"}, ("--output-dir", "{dir}/occupied"), "--output-dir"),
    ("output-dir-under-file", {"occupied": b"x"}, ("--output-dir", "{dir}/occupied/run"), "--output-dir"),
    ("output-dir-proc", {}, ("--output-dir", "/proc/nope/run"), "--output-dir"),
    ("output-dir-sys", {}, ("--output-dir", "/sys/nope"), "--output-dir"),
    ("output-dir-name-too-long", {}, ("--output-dir", "{dir}/" + "r" * 300), "--output-dir"),
    ("output-dir-nul", {}, ("--output-dir", "{dir}/a\x00b"), "--output-dir"),
    ("cache-dir-is-file", {"occupied": b"x"}, ("--set", "data.cache_dir={dir}/occupied"), "data.cache_dir"),
    ("cache-dir-proc", {}, ("--set", "data.cache_dir=/proc/nope"), "data.cache_dir"),
    ("teacher-checkpoint-missing", {}, ("--set", "distillation.teachers=[{checkpoint: '{dir}/none.weights.h5'}]"),
     "distillation.teachers[0].checkpoint"),
    ("teacher-checkpoint-suffix", {"t.ckpt": b"x"}, ("--set", "distillation.teachers=[{checkpoint: '{dir}/t.ckpt'}]"),
     "distillation.teachers[0].checkpoint"),
    ("teacher-checkpoint-not-hdf5", {"t.weights.h5": b"plain text"},
     ("--set", "distillation.teachers=[{checkpoint: '{dir}/t.weights.h5'}]"), "distillation.teachers[0].checkpoint"),
    ("teacher-checkpoint-not-zip", {"t.keras": b"plain text"},
     ("--set", "distillation.teachers=[{checkpoint: '{dir}/t.keras'}]"), "distillation.teachers[0].checkpoint"),
    ("teacher-checkpoint-second", {},
     ("--set", "distillation.teachers=[{train_steps: 1}, {checkpoint: '{dir}/none.h5'}]"),
     "distillation.teachers[1].checkpoint"),
    ("teacher-not-mapping", {}, ("--set", "distillation.teachers=[1]"), "distillation.teachers[0]"),
    ("teacher-weight-nan", {}, ("--set", "distillation.teachers=[{weight: .nan}]"), "distillation.teachers[0].weight"),
    ("offline-cache-missing", {},
     ("--set", "distillation.mode=offline", "--set", "distillation.cache_path={dir}/none.tfrecord",
      "--set", "distillation.teachers=[{checkpoint: '{dir}/none.h5'}]"), "distillation.cache_path"),
    ("offline-cache-name-too-long", {},
     ("--set", "distillation.mode=offline", "--set", "distillation.cache_path={dir}/" + "c" * 300 + ".tfrecord",
      "--set", "distillation.teachers=[{checkpoint: '{dir}/none.h5'}]"), "distillation.cache_path"),
    ("offline-teacher-without-checkpoint", {},
     ("--set", "distillation.mode=offline", "--set", "distillation.cache_path={dir}/none.tfrecord",
      "--set", "distillation.teachers=[{train_steps: 1}]"), "distillation.teachers[0].checkpoint"),
    ("layer-match-bad", {}, ("--set", "distillation.layer_matches=[{teacher_layer: x, student_layer: 1}]"),
     "distillation.layer_matches[0].teacher_layer"),
    ("vocab-not-utf8", {"vocab.txt": VOCAB + b"caf\xe9\n"}, ("--set", "data.vocab={dir}/vocab.txt"), "data.vocab"),
    ("vocab-missing", {}, ("--set", "data.vocab={dir}/none.txt"), "data.vocab"),
    ("vocab-is-folder", {}, ("--set", "data.vocab={dir}"), "data.vocab"),
    ("vocab-no-cls", {"vocab.txt": b"[PAD]\n[UNK]\n[SEP]\n"}, ("--set", "data.vocab={dir}/vocab.txt"), "data.vocab"),
    ("vocab-duplicate", {"vocab.txt": VOCAB + b"the\n"}, ("--set", "data.vocab={dir}/vocab.txt"), "data.vocab"),
    ("vocab-nul", {"vocab.txt": VOCAB + b"a\x00b\n"}, ("--set", "data.vocab={dir}/vocab.txt"), "data.vocab"),
    ("vocab-empty", {"vocab.txt": b""}, ("--set", "data.vocab={dir}/vocab.txt"), "data.vocab"),
    ("recipe-not-utf8", {"r.yaml": b"train:\n  steps: 5 # caf\xe9\n"}, ("--config", "{dir}/r.yaml"), "r.yaml"),
    ("recipe-deep", {"r.yaml": b"[" * 100_000}, ("--config", "{dir}/r.yaml"), "r.yaml"),
    ("recipe-deep-mapping", {"r.yaml": b"a: " * 20_000 + b"1"}, ("--config", "{dir}/r.yaml"), "r.yaml"),
    ("recipe-list", {"r.yaml": b"- 1\n- 2\n"}, ("--config", "{dir}/r.yaml"), "r.yaml"),
    ("recipe-not-yaml", {"r.yaml": b"train: [1, 2\n"}, ("--config", "{dir}/r.yaml"), "r.yaml"),
    ("recipe-python-object", {"r.yaml": b"!!python/object/apply:os.system ['true']\n"}, ("--config", "{dir}/r.yaml"),
     "r.yaml"),
    ("recipe-unknown-key", {"r.yaml": b"train:\n  stepz: 5\n"}, ("--config", "{dir}/r.yaml"), "train.stepz"),
    ("recipe-inf", {"r.yaml": b"train:\n  learning_rate: .inf\n"}, ("--config", "{dir}/r.yaml"), "train.learning_rate"),
    ("recipe-section-not-mapping", {"r.yaml": b"train: 5\n"}, ("--config", "{dir}/r.yaml"), "train"),
    ("recipe-missing", {}, ("--config", "{dir}/none.yaml"), "none.yaml"),
    ("recipe-unknown-name", {}, ("--config", "no_such_recipe"), "--config"),
    ("recipe-name-too-long", {}, ("--config", "c" * 5000), "--config"),
    ("set-without-equals", {}, ("--set", "train.steps"), "--set"),
    ("set-empty-key-part", {}, ("--set", "train..steps=1"), "--set"),
    ("set-leading-dot", {}, ("--set", ".steps=1"), "--set"),
    ("set-deep-value", {}, ("--set", "train.steps=" + "[" * 20_000), "train.steps"),
    ("set-section-scalar", {}, ("--set", "train=5"), "train"),
    ("set-unknown-section", {}, ("--set", "trian.steps=5"), "trian"),
    ("unknown-flag", {}, ("--bogus",), "--bogus"),
    ("output-dir-without-value", {}, ("--output-dir",), "--output-dir"),
    ("task-unknown", {}, ("--set", "task=bogus"), "task"),
    ("strategy-unknown", {}, ("--set", "train.strategy=gpu"), "train.strategy"),
    ("tpu-without-address", {}, ("--set", "train.strategy=tpu"), "train.tpu_address"),
    ("multitask-task-unknown", {}, ("--set", "multitask.tasks=squad2,bogus"), "multitask.tasks"),
    ("json-without-paths", {}, ("--set", "data.source=json"), "data.train_path"),
    ("json-dev-missing", {"good.json": GOOD_SQUAD},
     ("--set", "data.source=json", "--set", "data.train_path={dir}/good.json"), "data.dev_path"),
    ("train-path-missing", {"good.json": GOOD_SQUAD},
     ("--set", "data.source=json", "--set", "data.train_path={dir}/none.json", "--set", "data.dev_path={dir}/good.json"),
     "none.json"),
    ("train-path-folder", {"good.json": GOOD_SQUAD},
     ("--set", "data.source=json", "--set", "data.train_path={dir}", "--set", "data.dev_path={dir}/good.json"),
     "data.train_path"),
    ("max-context-bytes-zero", {}, ("--set", "data.max_context_bytes=0"), "data.max_context_bytes"),
    ("max-seq-length-huge", {}, ("--set", "data.max_seq_length=1000000"), "data.max_seq_length"),
    ("hidden-dim-huge", {}, ("--set", "model.hidden_dim=100000000"), "model.hidden_dim"),
    ("pretrained-name-too-long", {}, ("--set", "model.pretrained=" + "p" * 5000), "model.pretrained"),
]


def setting_cases():
    """Every malformed-settings case for `road_tf.train`: generated per field, plus the named ones."""
    named = [Case(f"setting-{name}", files, TRAIN_ARGS + argv, expect) for name, files, argv, expect in SPECIFIC_SETTINGS]
    return generated_setting_cases() + named


FINISHED = {"stages": {}, "final": {"task": "squad2", "f1": 50.0}}
"""A metrics.json of a finished run."""


def fake_run(folder, metrics):
    """A run directory whose metrics.json is made by `metrics(path)`, with a config.yaml and a
    student weights file (never loaded: the metrics are checked first)."""
    folder.mkdir()
    (folder / "config.yaml").write_text("task: squad2\n")
    (folder / "student").mkdir()
    (folder / "student" / "model.weights.h5").write_bytes(b"")
    metrics(folder / "metrics.json")
    return folder


def write_json(value):
    """A `fake_run` metrics maker that writes `value`: text as it is, anything else as JSON."""
    return lambda path: path.write_text(value if isinstance(value, str) else json.dumps(value))


def fake_saved_model(folder):
    """A version folder that predict takes for a SavedModel (it is refused before being loaded)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"the model")
    return folder
