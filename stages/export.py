"""Stage `export`: the trained model as ONNX and int8 ONNX in exported/, checked on validation.

exported/ holds model.onnx (fp32), model-int8.onnx (dynamically quantised, finetune/serving/onnx_export.py),
the tokenizer, config.json and task.json: all `finetune predict --engine onnx|int8` or a plain
onnxruntime session need (finetune/serving/). Both are scored on every validation split beside the
PyTorch model in fp32, the arithmetic the graph was exported in; metrics/export.json records each
one's metrics, its agreement with PyTorch's predictions and the largest probability difference,
and the model card shows them. A search trial keeps no weights: nothing to export.
"""

import time

import datasets

from finetune.core.errors import run_stage
from finetune.core.outputs import atomic_output, link_tree, write_json
from finetune.core.params import load_params
from finetune.core.paths import EXPORT_METRICS_FILE, EXPORTED_DIR, raw_split_file, trained_model_dir
from finetune.core.tasks import load_task
from finetune.data.label_sets import multi_hot
from finetune.serving.agreement import TOLERATED_LOSS, compare_engines, metric_loss
from finetune.serving.engines import OnnxEngine, TorchEngine
from finetune.serving.onnx_export import OPSET, export_onnx, quantise
from finetune.serving.served import INT8_FILE, ONNX_FILE, SERVING_FILE, Served

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "training_args.bin")


def main():
    params = load_params()
    task = load_task()
    started = time.perf_counter()
    if params.trial:
        with atomic_output(EXPORTED_DIR) as staging:
            staging.mkdir()
            (staging / "README.md").write_text(f"A trial of a search ({params.trial}) keeps no weights: nothing exported.\n")
        write_json(EXPORT_METRICS_FILE, {"exported": False})
        return
    trained = trained_model_dir()
    serves = Served(task, params.max_length, params.multi_label_threshold)
    with atomic_output(EXPORTED_DIR) as staging:
        staging.mkdir()
        link_tree(trained, staging, skip=WEIGHTS)
        (staging / SERVING_FILE).write_text(serves.to_json())
        inputs = export_onnx(trained, staging / ONNX_FILE, params.max_length)
        reduced_range, kept = quantise(staging / ONNX_FILE, staging / INT8_FILE)
        exported = time.perf_counter()
        engines = {"torch_fp32": TorchEngine(trained, params.eval_batch_size, "fp32", serves),
                   "onnx": OnnxEngine(staging, params.eval_batch_size, ONNX_FILE),
                   "int8": OnnxEngine(staging, params.eval_batch_size, INT8_FILE)}
        metrics = {"exported": True, "opset": OPSET, "inputs": inputs, "int8_reduce_range": reduced_range,
                   "int8_kept_in_fp32": len(kept)}
        for split in task.validation_splits:
            texts, labels = _validation(task, split)
            logits = {name: engine.logits(texts) for name, engine in engines.items()}
            scores = compare_engines(task, logits, labels, params.multi_label_threshold, "torch_fp32")
            lost = metric_loss(task, scores, "int8", "torch_fp32")
            metrics[split] = {**scores, f"int8_{task.main_metric}_loss": lost,
                              "int8_within_tolerance": lost <= TOLERATED_LOSS}
            agreement = "" if task.regression else f", agrees with torch on {scores['int8']['agreement']:.2%}"
            print(f"export: {split}: {task.main_metric} torch fp32 {scores['torch_fp32'][task.main_metric]:.4f}, "
                  f"onnx {scores['onnx'][task.main_metric]:.4f}, int8 {scores['int8'][task.main_metric]:.4f}{agreement}")
            if lost > TOLERATED_LOSS:
                print(f"export: warning: int8 loses {lost * 100:.1f} points of {split} {task.main_metric} "
                      f"(more than {TOLERATED_LOSS * 100:.0f}): serve model.onnx, or torch")
    write_json(EXPORT_METRICS_FILE, metrics)
    print(f"export: {ONNX_FILE}, {INT8_FILE} -> {EXPORTED_DIR}/ in {exported - started:.0f}s, scored in "
          f"{time.perf_counter() - exported:.0f}s -> {EXPORT_METRICS_FILE}")


def _validation(task, split):
    """The texts (a list per text column) and labels of a validation split, as the metrics take them."""
    rows = datasets.Dataset.from_parquet(str(raw_split_file(split)), keep_in_memory=True)
    texts = [rows[column] for column in task.text_columns]
    if task.multi_label:
        labels = [multi_hot(label_set, task.num_labels) for label_set in rows["label"]]
    else:
        labels = list(rows["label"])
    return texts, labels


if __name__ == "__main__":
    run_stage(main)
