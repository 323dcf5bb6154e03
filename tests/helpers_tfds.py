"""TFDS stand-ins shared by the tests of readers that load TFDS data sets."""


def squad_tfds_dataset(records):
    """A tf.data.Dataset shaped like TFDS squad/v2.0 examples, from plain dicts."""
    import tensorflow as tf

    def answers(items):
        return {"text": [text for text, _ in items], "answer_start": [start for _, start in items]}

    def generate():
        for record in records:
            yield {
                "id": record["id"], "title": record["title"], "context": record["context"],
                "question": record["question"], "is_impossible": record["is_impossible"],
                "answers": answers(record["answers"]), "plausible_answers": answers(record.get("plausible", [])),
            }

    span = {"text": tf.TensorSpec([None], tf.string), "answer_start": tf.TensorSpec([None], tf.int32)}
    signature = {"id": tf.TensorSpec([], tf.string), "title": tf.TensorSpec([], tf.string),
                 "context": tf.TensorSpec([], tf.string), "question": tf.TensorSpec([], tf.string),
                 "is_impossible": tf.TensorSpec([], tf.bool), "answers": span, "plausible_answers": span}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)
