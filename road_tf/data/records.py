"""SQuAD questions as `tf.train.Example` records: the TFX pipeline's interchange format.

Feature keys are defined once here and used by the pipeline's data step, its schema checks and
the Trainer module. `answer_text` and `answer_start` list every gold answer (the official SQuAD
2.0 metric scores against all of them); both are empty for an unanswerable question.
"""

import tensorflow as tf

from road_tf.data.examples import Answer, QAExample

ID, TITLE, QUESTION, CONTEXT, ANSWER_TEXT, ANSWER_START = (
    "id", "title", "question", "context", "answer_text", "answer_start")
STRING_KEYS = (ID, TITLE, QUESTION, CONTEXT)


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8") for value in values]))


def to_tf_example(example):
    """QAExample -> tf.train.Example with all of its gold answers."""
    feature = {key: _bytes([value]) for key, value in
               zip(STRING_KEYS, (example.qid, example.title, example.question, example.context))}
    feature[ANSWER_TEXT] = _bytes([answer.text for answer in example.answers])
    feature[ANSWER_START] = tf.train.Feature(int64_list=tf.train.Int64List(
        value=[answer.start for answer in example.answers]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def from_tf_example(serialized):
    """Serialized tf.train.Example bytes -> QAExample."""
    feature = tf.train.Example.FromString(serialized).features.feature
    text = {key: feature[key].bytes_list.value[0].decode("utf-8") for key in STRING_KEYS}
    answers = tuple(Answer(answer.decode("utf-8"), int(start)) for answer, start in
                    zip(feature[ANSWER_TEXT].bytes_list.value, feature[ANSWER_START].int64_list.value))
    return QAExample(text[ID], text[QUESTION], text[CONTEXT], answers, text[TITLE])


def write_records(path, examples):
    """Writes QAExamples as a TFRecord file of tf.train.Examples."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(to_tf_example(example).SerializeToString())


def read_records(patterns, compression_type="GZIP"):
    """Reads QAExamples back from TFRecord files or glob patterns (TFX ExampleGen writes them gzipped)."""
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(str(pattern)))
    dataset = tf.data.TFRecordDataset(files, compression_type=compression_type)
    return [from_tf_example(record.numpy()) for record in dataset]
