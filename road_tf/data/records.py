"""SQuAD questions as `tf.train.Example` records: the TFX pipeline's interchange format.

Feature keys are defined once here and used by the pipeline's data step, its schema checks and
the Trainer module. Unanswerable questions have an empty `answer_text` and `answer_start` -1.
"""

import tensorflow as tf

from road_tf.data.examples import Answer, QAExample

ID, TITLE, QUESTION, CONTEXT, ANSWER_TEXT, ANSWER_START = (
    "id", "title", "question", "context", "answer_text", "answer_start")
STRING_KEYS = (ID, TITLE, QUESTION, CONTEXT, ANSWER_TEXT)


def to_tf_example(example):
    """QAExample -> tf.train.Example (first gold answer only)."""
    answer = example.answers[0] if example.answers else Answer("", -1)
    values = {ID: example.qid, TITLE: example.title, QUESTION: example.question, CONTEXT: example.context,
              ANSWER_TEXT: answer.text}
    feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
               for key, value in values.items()}
    feature[ANSWER_START] = tf.train.Feature(int64_list=tf.train.Int64List(value=[answer.start]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def from_tf_example(serialized):
    """Serialized tf.train.Example bytes -> QAExample."""
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    text = {key: feature[key].bytes_list.value[0].decode("utf-8") for key in STRING_KEYS}
    start = feature[ANSWER_START].int64_list.value[0]
    answers = (Answer(text[ANSWER_TEXT], int(start)),) if start >= 0 else ()
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
