"""SQuAD 2.0-style extractive QA: span labels, a start/end head, span CE, official EM/F1."""

from road_tf import losses
from road_tf.data.features import END, MODEL_INPUTS, PADDING_MASK, SEGMENT_IDS, START, featurize_qa
from road_tf.evaluation.answerer import QAAnswerer
from road_tf.evaluation.qa_eval import (answer_questions, best_span_f1, held_out_tuned_f1, nbest_lists,
                                        no_answer_auc, squad_outputs, tuned_null_threshold)
from road_tf.evaluation.squad_metric import squad_v2_metrics
from road_tf.models.convert import has_span_head, load_span_head
from road_tf.models.heads import SpanHead
from road_tf.models.span_logits import SpanLogits
from road_tf.registry import SPAN
from road_tf.tasks.task import Evaluation, Task

EVAL_BATCH_QUESTIONS = 32


class SpanTask(Task):
    """A span (QA) task: outputs `<task>/start_logits` and `<task>/end_logits`, float32 [B, S]."""

    kind = SPAN
    metric = "f1"
    needs_dev_features = False

    @property
    def logit_keys(self):
        return self.output_keys(("start_logits", "end_logits"))

    def featurize(self, tokenizer, examples, data_config):
        """QAExamples -> the training arrays of their windows: `featurize_qa`'s model inputs and span
        labels (its char_offsets and example_index, which no training step reads, left out of the
        batches and the feature cache)."""
        features = featurize_qa(tokenizer, examples, data_config.max_seq_length, data_config.max_query_length,
                                data_config.doc_stride)
        return {key: features[key] for key in (*MODEL_INPUTS, START, END)}

    @property
    def head_name(self):
        """The span head's layer name in a task model."""
        return f"{self.name}_span_head"

    def head_outputs(self, sequence, inputs, dropout):
        """{start key: [B, S], end key: [B, S]} from the last hidden state [B, S, D]."""
        start, end = SpanHead(name=self.head_name)(sequence, inputs[SEGMENT_IDS], inputs[PADDING_MASK])
        return dict(zip(self.logit_keys, (start, end)))

    def has_pretrained_head(self, pretrained):
        """Whether `model.pretrained` names a Hugging Face QA folder with a `qa_outputs` head."""
        return has_span_head(pretrained)

    def load_pretrained_head(self, model, pretrained):
        """Loads the span head from a Hugging Face QA folder into `model` (nothing for other encoders)."""
        if self.has_pretrained_head(pretrained):
            load_span_head(model, self.head_name, pretrained)

    def hard_loss(self, logits, data):
        """Per-example span CE [B] of (start, end) logits against the window's labels."""
        return losses.span_ce(logits[0], logits[1], data[START], data[END])

    def answerer(self, model, tokenizer, config, null_score_diff_threshold=None, export=False):
        """The `QAAnswerer` (the exported model's graph) around `model`'s span logits (`SpanLogits`).

        export=True: a copy of the weights in `export.precision`, XLA when `export.jit_compile`;
        else float32 reading the model's current weights (evaluation during training).
        """
        settings = config.export
        if export:
            logits_model = SpanLogits(model, self.head_name, settings.precision, settings.jit_compile,
                                      settings.length_bucket if settings.jit_compile else 1,
                                      max_constant_bytes=settings.max_constant_mib << 20)
        else:
            logits_model = SpanLogits(model, self.head_name, frozen=False)
        return QAAnswerer(logits_model, tokenizer, config.data, config.decode, settings.window_group_size,
                          null_score_diff_threshold)

    def evaluate(self, model, data, tokenizer, config, null_score_diff_threshold=None):
        """Official SQuAD 2.0 metrics of the served decoder's answers on the dev questions.

        Besides the official keys, `metrics` holds `tuned_null_score_diff_threshold` and
        `tuned_f1`: the null-score threshold that maximises dev F1 and that F1; and
        `held_out_tuned_f1`: the F1 when each half of the dev articles is answered at the threshold
        tuned on the other half (`qa_eval.held_out_tuned_f1`), absent with a single article;
        `HasAns_span_f1`: the answerable questions' F1 when each gets its best span, whatever the
        null score (`qa_eval.best_span_f1`); `no_answer_auc`: how well the no-answer margin ranks
        unanswerable above answerable questions (`qa_eval.no_answer_auc`). The last two are
        absent when the dev questions lack a kind they need.
        """
        return self.evaluator(model, data, tokenizer, config, null_score_diff_threshold)()

    def evaluator(self, model, data, tokenizer, config, null_score_diff_threshold=None):
        """`evaluate` as a function of no arguments that traces the answer graph once (seconds) and
        reuses it at every call: the model's weights change in place between calls."""
        answerer = self.answerer(model, tokenizer, config, null_score_diff_threshold)
        answer_fn = answerer.nbest_function()

        def evaluation():
            outputs = answer_questions(answer_fn, data.dev_examples, EVAL_BATCH_QUESTIONS)
            predictions, na_probs = squad_outputs(data.dev_examples, outputs)
            metrics = squad_v2_metrics(data.dev_examples, predictions, na_probs)
            metrics["tuned_f1"], metrics["tuned_null_score_diff_threshold"] = tuned_null_threshold(
                data.dev_examples, outputs)
            diagnostics = {"held_out_tuned_f1": held_out_tuned_f1(data.dev_examples, outputs),
                           "HasAns_span_f1": best_span_f1(data.dev_examples, outputs["best_text"]),
                           "no_answer_auc": no_answer_auc(data.dev_examples, outputs)}
            metrics.update({key: value for key, value in diagnostics.items() if value is not None})
            metrics["null_score_diff_threshold"] = answerer.null_score_diff_threshold
            files = {"predictions.json": predictions, "na_probs.json": na_probs,
                     "nbest.json": nbest_lists(data.dev_examples, outputs)}
            return Evaluation(metrics, files)

        return evaluation
