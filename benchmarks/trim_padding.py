"""Train-step time saved by `train.trim_padding` on real SQuAD 2.0 windows.

    .venv/bin/python benchmarks/trim_padding.py [--rounds 12] [--model minilm|small] [--multiple 32]

Data: the training articles of the public SQuAD 2.0 half in ../shared, featurized as
`configs/squad2_minilm.yaml` does (256-token windows, stride 128; the synthetic corpus at 256
tokens when ../shared is absent). Model: the MiniLM span model (`minilm`, 6 layers) or its first
3 layers (`small`, the small-scale student until 2026-12-03; it now has 4); AdamW; batch 16.
Two streams of the same rows:
  padded    `training.train_dataset` without trimming: every batch holds 256 positions
  trimmed   with `trim_padding=--multiple`: rows grouped by length, each batch cut after its
            longest row, rounded up to the multiple
One compiled train step (traced once for any sequence length) takes one batch of each stream per
round, in alternation, after warm-up; each stream moves on through its own batches, so the
trimmed side pays for the spread of widths an epoch has. value = total padded seconds / total
trimmed seconds over the same number of steps (goal >= 1.2; higher is better). The JSON also
gives the timed batches' mean width and that of a whole epoch of the trimmed stream.
"""

import dataclasses

import common

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from road_tf.config import load_config, resolve_recipe  # noqa: E402
from road_tf.data.features import PADDING_MASK  # noqa: E402
from road_tf.data.tokenizer import load_tokenizer  # noqa: E402
from road_tf.distillation.distiller import Distiller  # noqa: E402
from road_tf.errors import ArgumentParser, cli_main, nonempty, whole_number  # noqa: E402
from road_tf.files import check_writable_dir  # noqa: E402
from road_tf.models.task_model import build_model  # noqa: E402
from road_tf.tasks import get_task, load_task_data  # noqa: E402
from road_tf.training import make_optimizer, train_dataset  # noqa: E402

SQUAD = "data/squad2-dev/squad2-dev-public.json.gz"
MODELS = {"minilm": ["model.pretrained=minilm"], "small": ["model.pretrained=minilm", "model.pretrained_layers=[0,1,2]"]}
MAX_MULTIPLE = load_config(resolve_recipe("squad2_minilm")).data.max_seq_length
"""The largest --multiple: the recipe's window length (a larger multiple trims nothing)."""


def recipe(model, cache_dir, squad):
    """The squad2_minilm recipe on the SQuAD file `squad` (None: the synthetic corpus), with `model`'s
    layers and the feature cache under the folder `cache_dir`, taken as it is (a `--set` value would
    be read as YAML: "x\\ny" became "x y", "~" null)."""
    data = ([f"data.train_path={squad}"] if squad else
            ["data.source=synthetic", "data.split_dev_questions=0", "data.synthetic_train_size=2000"])
    config = load_config(resolve_recipe("squad2_minilm"), [*data, *MODELS[model]])
    return dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=cache_dir))


def train_step(config, element_spec):
    """The model's compiled train step, a tf.function of one batch of `element_spec` (whose
    sequence length may vary)."""
    task = get_task(config.task)
    tokenizer = load_tokenizer(config.data.vocab)
    keras.utils.set_random_seed(0)
    model = build_model(config.model, [task], tokenizer.vocabulary_size, config.data.max_seq_length, "student")
    distiller = Distiller(model, task)
    distiller.compile(optimizer=make_optimizer(config.train.learning_rate, 10_000, 0.1, 0.01))
    distiller.optimizer.build(distiller.trained_variables())
    return tf.function(distiller.train_step, input_signature=[element_spec])


@cli_main
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_argument("--rounds", type=whole_number, default=12,
                        help=f"timed steps of each stream (default 12, at most {common.MAX_REPEATS})")
    parser.add_argument("--warmup", type=whole_number, default=2,
                        help=f"untimed steps of each stream first, tracing (default 2, 1 to {common.MAX_REPEATS})")
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm",
                        help="the 6-layer MiniLM of squad2_minilm (default) or its first 3 layers")
    parser.add_argument("--multiple", type=whole_number, default=32,
                        help=f"train.trim_padding of the trimmed stream (default 32, at most {MAX_MULTIPLE})")
    parser.add_argument("--cache-dir", type=nonempty, default="runs/cache", help="feature cache (data.cache_dir)")
    args = common.parse_flags(parser, argv, bounds={"rounds": (1, common.MAX_REPEATS),
                                                    "warmup": (1, common.MAX_REPEATS), "multiple": (1, MAX_MULTIPLE)})
    check_writable_dir(args.cache_dir, "--cache-dir")

    squad = common.shared_file(SQUAD)
    config = recipe(args.model, args.cache_dir, squad)
    task = get_task(config.task)
    features = load_task_data(task, config, load_tokenizer(config.data.vocab)).train_features
    batch = config.train.batch_size
    trimmed_stream = train_dataset(features, batch, seed=0, trim_padding=args.multiple)
    step = train_step(config, trimmed_stream.element_spec)
    streams = {"padded": iter(train_dataset(features, batch, seed=0)), "trimmed": iter(trimmed_stream)}
    widths = []

    def stream_step(name):
        data = next(streams[name])
        if name == "trimmed":
            widths.append(int(data[PADDING_MASK].shape[1]))
        return lambda: float(step(data)["loss"])

    times = {name: [] for name in streams}
    for round_index in range(args.warmup + args.rounds):
        for name in streams:
            seconds = common.time_once(stream_step(name))[0]
            if round_index >= args.warmup:
                times[name].append(seconds)
    padded, trimmed = sum(times["padded"]), sum(times["trimmed"])
    per_epoch = len(features[PADDING_MASK]) // batch
    epoch = trimmed_stream.take(per_epoch)
    epoch_width = float(np.mean([int(data[PADDING_MASK].shape[1]) for data in epoch]))
    real_share = float(np.mean(features[PADDING_MASK]))
    print(f"seconds a step: padded {padded / args.rounds:.3f}, trimmed {trimmed / args.rounds:.3f} "
          f"(widths {widths[args.warmup:]})")
    common.result_line(
        "trim_padding", padded / trimmed, 1.2, "higher", "ratio of train-step seconds (padded / trimmed)",
        padded_seconds_per_step=round(padded / args.rounds, 4), trimmed_seconds_per_step=round(trimmed / args.rounds, 4),
        median_ratio=round(common.median(times["padded"]) / common.median(times["trimmed"]), 4),
        trimmed_mean_width=round(float(np.mean(widths[args.warmup:])), 1), epoch_mean_width=round(epoch_width, 1),
        full_width=config.data.max_seq_length,
        real_token_share=round(real_share, 4), model=args.model, multiple=args.multiple, batch=batch,
        rounds=args.rounds, data="squad2 public half, training articles" if squad else "synthetic",
    )


if __name__ == "__main__":
    main()
