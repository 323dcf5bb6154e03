"""SQuAD 2.0 questions: read and write the official JSON layout, or load them from TFDS.

The JSON layout is `{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}`, plain or gzipped.
Every question is checked while it is read; unknown extra fields (`plausible_answers`, ...) are
ignored. A question without `is_impossible` is unanswerable exactly when its `answers` list is empty,
as the official evaluation script reads every question. Problems above the question level (bad JSON, `data` or `qas` not a list, ...) always stop
the read; problems with one question stop it too unless `skip_bad_records` is set, in which case the
question is logged, skipped and counted.
"""

import hashlib
import json

from road_tf.data.examples import Answer, QAExample, parse_all
from road_tf.data.json_files import read_json
from road_tf.errors import DataError, first_control_character, is_integer, text_problem, utf8_problem
from road_tf.files import write_data_file


_KINDS = {
    "a string": lambda value: isinstance(value, str),
    "a list": lambda value: isinstance(value, list),
    "an integer": is_integer,
}


def read_squad_json(path, skip_bad_records=False):
    """Reads a SQuAD 1.1/2.0 JSON file (`.json` or `.json.gz`) into a list of QAExample.

    With `skip_bad_records`, a bad question is logged as a warning and skipped instead of raising,
    and how many were skipped is logged at the end.

    Raises:
        DataError: naming the file, the question id (or location) and the problem.
    """
    return document_questions(read_json(path), path, skip_bad_records)


def document_questions(document, path, skip_bad_records=False):
    """`read_squad_json` of a document already parsed from `path` (named in errors)."""
    return _collect(path, _iter_json_questions(path, document), skip_bad_records)


def load_squad_tfds(split, name="squad/v2.0", skip_bad_records=False):
    """Loads one TFDS split (e.g. "train", "validation[:10%]") of `name` as QAExample.

    Uses `tfds.load`, which downloads and prepares the data set on first use (into TFDS's data
    folder: $TFDS_DATA_DIR, else ~/tensorflow_datasets). Records are checked like JSON questions;
    errors name the source as `tfds:NAME/SPLIT`.
    """
    import tensorflow_datasets as tfds  # Imported here: it pulls in TensorFlow.

    source = f"tfds:{name}/{split}"
    dataset = tfds.load(name, split=split, shuffle_files=False)
    records = (_tfds_record_to_json(record, index) for index, record in enumerate(tfds.as_numpy(dataset)))
    return _collect(source, records, skip_bad_records)


def write_squad_json(path, examples):
    """Writes QAExample as a SQuAD 2.0 JSON file, gzipped when `path` ends in `.gz`.

    Consecutive questions that share a title form one article, and consecutive ones that share a
    context one paragraph, so reading the file back gives `examples` in order. The file (mode 0644)
    is written to a temporary name beside `path` and then renamed, so readers never see half a file.
    """
    write_data_file(path, json.dumps({"version": "v2.0", "data": _articles(examples)}))


def _field(path, record, obj, name, kind, where):
    """Returns `obj[name]` after checking `obj` is a dict and the value is of `kind` (a _KINDS key).

    `where` names `obj` in messages ("question", "answers[0]", ...; "" for the top level).
    """
    if not isinstance(obj, dict):
        raise DataError(path, f"{where or 'the top level'} must be an object, got {_type_name(obj)}", record)
    if name not in obj:
        raise DataError(path, f"{where or 'the top level'} has no {name!r} field", record)
    value = obj[name]
    if not _KINDS[kind](value):
        label = f"{where}.{name}" if where else name
        raise DataError(path, f"{label} must be {kind}, got {_type_name(value)}", record)
    return value


def _type_name(value):
    """JSON's name for the type of a parsed value, with its article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _iter_json_questions(path, document):
    """Yields (location, qa, context, title) per question; raises DataError on structural problems.

    `context` is the paragraph's context, or a DataError when it is missing or not a string: that
    makes each of the paragraph's questions bad, not the whole file.
    """
    data = _field(path, None, document, "data", "a list", "")
    for a_index, article in enumerate(data):
        where = f"data[{a_index}]"
        paragraphs = _field(path, where, article, "paragraphs", "a list", "article")
        if "qas" in article:
            raise DataError(path, "article has a 'qas' field; questions belong in paragraphs[].qas", where)
        title = article.get("title", "")
        if not isinstance(title, str):
            raise DataError(path, f"article.title must be a string, got {_type_name(title)}", where)
        _check_text(path, where, "article.title", title, allow_blank=True)
        for p_index, paragraph in enumerate(paragraphs):
            p_where = f"{where}.paragraphs[{p_index}]"
            qas = _field(path, p_where, paragraph, "qas", "a list", "paragraph")
            context = _paragraph_context(path, paragraph, p_where)
            for q_index, qa in enumerate(qas):
                yield f"{p_where}.qas[{q_index}]", qa, context, title


def _paragraph_context(path, paragraph, where):
    """Returns the paragraph's context string, or the DataError that says why there is none."""
    try:
        return _field(path, where, paragraph, "context", "a string", "paragraph")
    except DataError as error:
        return error


def _collect(path, questions, skip_bad_records):
    """Parses (location, qa, context, title) tuples into QAExample, enforcing unique ids (`parse_all`:
    under `skip_bad_records` a bad question is logged and skipped).

    Returns:
        list of QAExample.
    """
    seen = {}

    def parse(question):
        where, qa, context, title = question
        example = _parse_question(path, where, qa, context, title)
        if example.qid in seen:
            raise DataError(path, f"duplicate question id (first at {seen[example.qid]})", example.qid)
        seen[example.qid] = where
        return example

    return parse_all(questions, parse, path, skip_bad_records, "question")


def _parse_question(path, where, qa, context, title):
    """Checks one raw question dict and returns its QAExample; raises DataError naming its id."""
    qid = qa.get("id") if isinstance(qa, dict) else None
    control = first_control_character(qid) if isinstance(qid, str) else None
    record = qid if isinstance(qid, str) and qid.strip() and not control else where
    if isinstance(context, DataError):
        raise DataError(path, context.problem, record)
    _check_text(path, record, "the paragraph's context", context)
    qid = _field(path, record, qa, "id", "a string", "question")
    _check_text(path, record, "question.id", qid)
    if control:  # ids are printed in logs and reports, where a line break or an escape would forge lines
        raise DataError(path, f"question.id holds the control character {control!r}", record)
    question = _field(path, record, qa, "question", "a string", "question")
    _check_text(path, record, "question.question", question)
    raw_answers = _field(path, record, qa, "answers", "a list", "question")
    # Without the field, a question with no answers has none, as the official script reads every question.
    is_impossible = qa.get("is_impossible", not raw_answers)
    if not isinstance(is_impossible, bool):
        raise DataError(path, f"question.is_impossible must be a boolean, got {_type_name(is_impossible)}", record)
    answers = tuple(_parse_answer(path, record, index, raw, context) for index, raw in enumerate(raw_answers))
    if is_impossible and answers:
        raise DataError(path, f"is_impossible is true but the question has {len(answers)} answer(s)", record)
    if not is_impossible and not answers:
        raise DataError(path, "is_impossible is false but the question has no answers", record)
    return QAExample(qid=qid, question=question, context=context, answers=answers, title=title)


def _check_text(path, record, label, text, allow_blank=False):
    """Raises DataError unless `text` is valid Unicode (JSON's "\\ud800" escapes can make lone
    surrogates, which no UTF-8 consumer accepts) and, unless `allow_blank`, holds a non-space."""
    problem = utf8_problem(text) if allow_blank else text_problem(text)
    if problem:
        raise DataError(path, f"{label} is {problem}", record)


def _parse_answer(path, record, index, raw, context):
    """Checks one raw answer dict against the context and returns an Answer without the white space
    at either end of its text (a span that starts or ends in white space fits no window's tokens,
    so it was trained as "no answer")."""
    where = f"answers[{index}]"
    text = _field(path, record, raw, "text", "a string", where)
    start = _field(path, record, raw, "answer_start", "an integer", where)
    if not text:
        raise DataError(path, f"{where}.text is empty", record)
    end = start + len(text)
    if start < 0 or end > len(context):
        raise DataError(path, f"{where} span [{start}, {end}) lies outside the context "
                              f"({len(context)} characters)", record)
    if context[start:end] != text:
        raise DataError(path, f"{where}.text {text!r} does not match the context at answer_start {start} "
                              f"({context[start:end]!r})", record)
    _check_text(path, record, f"{where}.text", text)
    return Answer(text=text.strip(), start=start + len(text) - len(text.lstrip()))


def _tfds_record_to_json(record, index):
    """Turns one TFDS squad/v2.0 NumPy record into (location, qa dict, context, title) as in JSON."""
    answers = record["answers"]
    qa = {
        "id": _text(record["id"]),
        "question": _text(record["question"]),
        "answers": [{"text": _text(text), "answer_start": int(start)}
                    for text, start in zip(answers["text"], answers["answer_start"])],
        "is_impossible": bool(record.get("is_impossible", False)),
    }
    return f"example {index}", qa, _text(record["context"]), _text(record.get("title", b""))


def _text(value):
    """Decodes a TFDS text value (bytes) to str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _articles(examples):
    """Groups QAExample into SQuAD's article/paragraph/qas JSON structure (a list of articles).

    Consecutive questions with one title share an article; consecutive ones with one context share
    a paragraph, so file order is question order.
    """
    articles = []
    for example in examples:
        if not articles or articles[-1]["title"] != example.title:
            articles.append({"title": example.title, "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != example.context:
            paragraphs.append({"context": example.context, "qas": []})
        paragraphs[-1]["qas"].append({
            "id": example.qid,
            "question": example.question,
            "answers": [{"text": answer.text, "answer_start": answer.start} for answer in example.answers],
            "is_impossible": example.is_impossible,
        })
    return articles


def split_by_article(data_dict, min_dev_questions=1000):
    """Splits one SQuAD JSON document into (train, dev) documents by whole articles, deterministically.

    The rule: sort the articles by the hex sha256 of their title (UTF-8), ascending; dev takes
    articles in that order until it holds at least `min_dev_questions` questions; the rest is
    train. Both keep the articles' original order, and the document's other top-level fields
    (e.g. "version"). Every question of an article lands in the same split.

    Args:
        data_dict: a parsed SQuAD document {"data": [{"title", "paragraphs": [{"qas": [...]}]}]}.
        min_dev_questions: questions dev must reach (all articles go to dev if they hold fewer).
    Returns:
        (train_dict, dev_dict), new dicts sharing the article objects of `data_dict`.
    """
    articles = data_dict["data"]
    order = sorted(range(len(articles)),
                   key=lambda i: hashlib.sha256(articles[i].get("title", "").encode("utf-8")).hexdigest())
    dev, questions = set(), 0
    for index in order:
        if questions >= min_dev_questions:
            break
        dev.add(index)
        questions += sum(len(paragraph["qas"]) for paragraph in articles[index]["paragraphs"])
    train_dict = {**data_dict, "data": [a for i, a in enumerate(articles) if i not in dev]}
    dev_dict = {**data_dict, "data": [a for i, a in enumerate(articles) if i in dev]}
    return train_dict, dev_dict


def split_for_training(data_dict, min_dev_questions, path, setting, alternative):
    """`split_by_article`, refusing a split that leaves nothing to train on.

    Args:
        data_dict: the SQuAD document parsed from `path`.
        min_dev_questions: questions dev must reach, set by the user as `setting` (a flag or
            config field, named in the error).
        alternative: the other way to give dev questions, as advice in the error.
    Returns:
        (train_dict, dev_dict), as `split_by_article`.
    Raises:
        DataError: naming `path`, when every article goes to dev.
    """
    train, dev = split_by_article(data_dict, min_dev_questions)
    if train["data"] or not dev["data"]:
        return train, dev
    articles = len(dev["data"])
    questions = sum(len(paragraph["qas"]) for article in dev["data"] for paragraph in article["paragraphs"])
    lower = f"lower {setting} (now {min_dev_questions}) or " if articles > 1 else ""
    raise DataError(path, f"the article split leaves no training questions: all {articles} article(s) ({questions} "
                          f"questions) go to the dev half, which takes articles until it holds {setting} questions; "
                          f"{lower}{alternative}")
