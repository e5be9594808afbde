"""`finetune bench --inference`: the published model's speed on each engine, side by side.

On the same texts (validation's, `--rows` of them, repeated if it has fewer), in one process, one
engine after the other: PyTorch in fp32 and at the training precision (bf16 where the CPU has it),
the exported ONNX model and its int8 variant on ONNX Runtime. For each, at batch 1 and batch 64,
rows/s and milliseconds per row (the median of `--repeats` passes, after one warm-up pass), and the
speed against PyTorch fp32. Every engine runs on the same threads (all the process may use).
Timings say how fast, never whether a test passes.

    finetune bench --inference                 # after `dvc repro export`
    finetune bench --inference --rows 2000 --batch-sizes 1 8 64
"""

import statistics
import time

import datasets
import torch

from finetune.core.errors import PipelineError
from finetune.core.paths import EXPORTED_DIR, MODEL_DIR, raw_split_file
from finetune.models import resolved_precision
from finetune.serving.engines import OnnxEngine, TorchEngine
from finetune.serving.served import INT8_FILE, ONNX_FILE, served


def add_arguments(parser):
    parser.add_argument("--inference", action="store_true",
                        help="instead: rows/s of the published model on torch fp32, torch at the training precision, "
                             "ONNX and int8, at --batch-sizes (finetune/commands/inference_bench.py)")
    parser.add_argument("--rows", type=int, default=512, help="with --inference: rows timed per pass (default 512)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="with --inference (default 1 64)")
    parser.add_argument("--repeats", type=int, default=3, help="with --inference: timed passes, median (default 3)")


def run(arguments):
    serves = served(MODEL_DIR)
    texts = _texts(serves.task, arguments.rows)
    precision = resolved_precision("auto")
    threads = torch.get_num_threads()
    print(f"inference: {len(texts[0])} rows of validation, {threads} threads, torch {torch.__version__}; "
          f"batch sizes {', '.join(map(str, arguments.batch_sizes))}; median of {arguments.repeats} passes")
    results = {}
    for batch_size in arguments.batch_sizes:
        engines = {"torch fp32": (TorchEngine, MODEL_DIR, "fp32"),
                   **({f"torch {precision}": (TorchEngine, MODEL_DIR, precision)} if precision != "fp32" else {}),
                   "onnx": (OnnxEngine, EXPORTED_DIR, ONNX_FILE), "int8": (OnnxEngine, EXPORTED_DIR, INT8_FILE)}
        for name, (kind, folder, option) in engines.items():
            engine = kind(folder, batch_size, option, *([threads] if kind is OnnxEngine else []))
            engine.logits(texts)  # warm-up: allocations, ONNX Runtime's first-run optimisations
            seconds = []
            for _ in range(arguments.repeats):
                started = time.perf_counter()
                engine.logits(texts)
                seconds.append(time.perf_counter() - started)
            results[name, batch_size] = statistics.median(seconds)
            del engine
    print(f"{'engine':<12} {'batch':>5} {'rows/s':>8} {'ms/row':>8} {'vs torch fp32':>14}")
    for (name, batch_size), seconds in results.items():
        rate = len(texts[0]) / seconds
        print(f"{name:<12} {batch_size:>5} {rate:>8,.1f} {1000 * seconds / len(texts[0]):>8.2f} "
              f"{results['torch fp32', batch_size] / seconds:>13.2f}x")
    return results


def _texts(task, rows):
    split = task.validation_splits[0]
    if not raw_split_file(split).is_file():
        raise PipelineError(f"{raw_split_file(split)} not found: run `dvc repro download` first")
    data = datasets.Dataset.from_parquet(str(raw_split_file(split)), keep_in_memory=True)
    repeats = -(-rows // len(data))
    return [(list(data[column]) * repeats)[:rows] for column in task.text_columns]
