"""The Distiller: a Keras model whose `train_step` fine-tunes a student, with or without teachers.

Without teachers it is plain fine-tuning on hard labels, so every run goes through this one
train step. With teachers it adds logits KD (ensembled, temperature-scaled, scheduled) and
hidden-state KD through learned projections that live here, not in the student, and are
therefore not exported. Teachers are frozen and run with `training=False`. Each teacher has its
own layer map and projections, so teachers of different depths and widths can be combined.
"""

import keras
import tensorflow as tf

from road_tf import losses
from road_tf.config import PROJECTION_INITS
from road_tf.data.features import MODEL_INPUTS, PADDING_MASK
from road_tf.distillation.offline import offline_teacher_key
from road_tf.models.task_model import HIDDEN_STATES
from road_tf.training import dense_gradients


class Distiller(keras.Model):
    """Trains `student` on one task; `call` is the student's forward pass.

    Args:
        student: a task model from `build_task_model` (outputs include hidden states).
        task: the task object (`road_tf.tasks`) whose head is trained; it names the logits and
            computes the hard loss.
        distillation: `DistillationConfig`; ignored when there are no teachers.
        teachers: frozen task models (online mode), each with the same task head.
        num_offline_teachers: teachers whose logits arrive in the data (offline mode).
        layer_matches: hidden-state KD (online only): one tuple of `LayerMatch` per teacher, in
            the teachers' order (empty when hidden KD is off).
        total_steps: length of the λ / T schedules.
    """

    def __init__(self, student, task, distillation=None, teachers=(), num_offline_teachers=0,
                 layer_matches=(), total_steps=1, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.task = task
        self.config = distillation
        self.teachers = list(teachers)
        for teacher in self.teachers:
            teacher.trainable = False
        self.num_teachers = len(self.teachers) or num_offline_teachers
        self.layer_matches = tuple(tuple(matches) for matches in layer_matches)
        if self.layer_matches and len(self.layer_matches) != len(self.teachers):
            raise ValueError(f"layer_matches: one tuple per online teacher needed, got {len(self.layer_matches)} "
                             f"for {len(self.teachers)} teachers")
        self.total_steps = total_steps
        self.keys = task.logit_keys
        self.projections = [
            [self._projection(student, teacher, match, t, i) for i, match in enumerate(matches)]
            for t, (teacher, matches) in enumerate(zip(self.teachers, self.layer_matches))
        ]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self._term_names()}

    def _projection(self, student, teacher, match, teacher_index, match_index):
        """The learned map of one match: student width -> that teacher layer's width, starting as
        `distillation.projection_init` says (an identity [D_s, D_t] keeps the first min(D_s, D_t) dims)."""
        projection = keras.layers.Dense(self._width(teacher, match.teacher_layer),
                                        kernel_initializer=PROJECTION_INITS[self.config.projection_init],
                                        name=f"hidden_projection_{teacher_index}_{match_index}")
        projection.build((None, None, self._width(student, match.student_layer)))
        return projection

    @staticmethod
    def _width(model, layer):
        return model.output[HIDDEN_STATES][layer].shape[-1]

    def _term_names(self):
        """Names of every logged term, fixed at construction (metrics cannot be created in a step)."""
        names = ["loss", "hard_loss"]
        if self.num_teachers:
            names += ["kd_loss", "kd_weight", "temperature", "weighted_hard_loss", "weighted_kd_loss"]
        if self.layer_matches:
            names += [self._match_name(t, m) for t, matches in enumerate(self.layer_matches) for m in matches]
            names += ["hidden_loss", "weighted_hidden_loss"]
        return names

    def call(self, inputs, training=False):
        return self.student({key: inputs[key] for key in MODEL_INPUTS}, training=training)

    def _track(self, values):
        """Updates the Mean tracker of every logged loss term; returns their current results."""
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _teacher_outputs(self, data):
        """Teacher logits: a list over teachers of tuples over heads, and online teacher outputs."""
        if self.teachers:
            outputs = [teacher({key: data[key] for key in MODEL_INPUTS}, training=False) for teacher in self.teachers]
            return [tuple(out[key] for key in self.keys) for out in outputs], outputs
        logits = [
            tuple(data[offline_teacher_key(t, h)] for h in range(len(self.keys))) for t in range(self.num_teachers)
        ]
        return logits, None

    def compute_losses(self, data, training=True):
        """All loss terms for one batch.

        Returns:
            (total [B] per-example loss, dict of scalar terms to log: unweighted and weighted).
        """
        outputs = self.student({key: data[key] for key in MODEL_INPUTS}, training=training)
        logits = tuple(outputs[key] for key in self.keys)
        hard = self.task.hard_loss(logits, data)
        terms = {"hard_loss": tf.reduce_mean(hard)}
        if not self.num_teachers:
            return hard, terms
        config = self.config
        step = self.optimizer.iterations if self.optimizer is not None else 0
        temperature = losses.schedule_value(config.temperature_schedule, config.temperature, config.temperature_end,
                                            step, self.total_steps)
        kd_weight = losses.schedule_value(config.kd_weight_schedule, config.kd_weight, config.kd_weight_end,
                                          step, self.total_steps)
        teacher_logits, teacher_outputs = self._teacher_outputs(data)
        weights = [t.weight for t in config.teachers] or [1.0] * self.num_teachers
        kd_heads = []
        for head, student_head_logits in enumerate(logits):
            per_teacher = [teacher[head] for teacher in teacher_logits]
            if config.kd_loss in losses.PROBABILITY_LOSSES:
                probs = losses.ensemble_teacher_probs(per_teacher, weights, temperature, config.ensemble)
                kd_heads.append(losses.PROBABILITY_LOSSES[config.kd_loss](student_head_logits, probs, temperature))
            else:
                ensembled = losses.ensemble_teacher_logits(per_teacher, weights)
                kd_heads.append(losses.get_loss(config.kd_loss)(student_head_logits, ensembled, temperature))
        kd = tf.add_n(kd_heads) / float(len(kd_heads))
        total = losses.combine(hard, kd, kd_weight)
        terms.update({"kd_loss": tf.reduce_mean(kd), "kd_weight": kd_weight, "temperature": temperature,
                      "weighted_hard_loss": tf.reduce_mean((1.0 - kd_weight) * hard),
                      "weighted_kd_loss": tf.reduce_mean(kd_weight * kd)})
        if self.layer_matches:
            hidden = self._hidden_loss(outputs[HIDDEN_STATES], teacher_outputs, data[PADDING_MASK], terms)
            total = total + config.hidden_weight * hidden
            terms["weighted_hidden_loss"] = tf.reduce_mean(config.hidden_weight * hidden)
        return total, terms

    def _match_name(self, teacher_index, match):
        """Logged name of one match's loss (the teacher index only when there are several teachers)."""
        prefix = f"hidden_loss_t{teacher_index}_" if len(self.layer_matches) > 1 else "hidden_loss_"
        return f"{prefix}{match.teacher_layer}_{match.student_layer}"

    def _hidden_loss(self, student_hidden, teacher_outputs, mask, terms):
        """Mean over teachers of each teacher's weighted sum of projected hidden MSEs -> [B]."""
        per_teacher = []
        for t, (matches, projections, outputs) in enumerate(zip(self.layer_matches, self.projections,
                                                                 teacher_outputs)):
            total = 0.0
            for match, projection in zip(matches, projections):
                value = losses.hidden_mse(projection(student_hidden[match.student_layer]),
                                          outputs[HIDDEN_STATES][match.teacher_layer], mask)
                terms[self._match_name(t, match)] = tf.reduce_mean(value)
                total = total + match.weight * value
            per_teacher.append(total)
        hidden = tf.add_n(per_teacher) / float(len(per_teacher))
        terms["hidden_loss"] = tf.reduce_mean(hidden)
        return hidden

    def trained_variables(self):
        """The student's and the projections' trainable variables (never a teacher's)."""
        variables = list(self.student.trainable_variables)
        for projections in self.projections:
            for projection in projections:
                variables += projection.trainable_variables
        return variables

    def train_step(self, data):
        with tf.GradientTape() as tape:
            per_example, terms = self.compute_losses(data, training=True)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trained_variables()
        gradients = dense_gradients(tape.gradient(scaled, variables))
        self.optimizer.apply(gradients, variables)
        return self._track({"loss": loss, **terms})

    def test_step(self, data):
        per_example, terms = self.compute_losses(data, training=False)
        return self._track({"loss": tf.nn.compute_average_loss(per_example), **terms})
