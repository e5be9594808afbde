"""A published model as a function from texts to logits, on one of three engines: PyTorch (at a
precision), the exported ONNX model or its int8 variant, both on ONNX Runtime.

Rows are predicted in length order (batches of similar lengths need little padding) and returned
in the order given. The model folder says what it serves (finetune/serving/served.py), so a
folder fetched from another revision or the registry predicts as its own run did.
"""

import inspect
from pathlib import Path

import numpy as np

from finetune.core.errors import PipelineError
from finetune.processes import cpu_threads
from finetune.serving.served import INT8_FILE, ONNX_FILE, served

ENGINES = ("torch", "onnx", "int8")


class Engine:
    """Tokenizes texts as the tokenize stage did and returns each row's logits (float32)."""

    def __init__(self, folder, batch_size, serves=None):
        from finetune.models import load_tokenizer

        self.folder, self.batch_size = Path(folder), batch_size
        self.served = serves or served(folder)
        self.tokenizer = load_tokenizer(str(folder))

    def logits(self, texts, on_batch=None):
        """texts: one list per text column of the task; logits (rows, outputs) in the rows' order.
        `on_batch(rows, padded_tokens)` after each batch, for a progress line."""
        texts = [list(column) for column in texts]
        encoded = self.tokenizer(*texts, truncation=True, max_length=self.served.max_length)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts[0]))
        order = np.argsort(lengths, kind="stable")  # as the evaluate stage orders a split
        outputs = np.zeros((len(order), self.served.task.num_labels), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({name: [values[row] for row in rows] for name, values in encoded.items()},
                                       return_tensors="np")
            outputs[rows] = self.run(batch)
            if on_batch:
                on_batch(len(rows), int(batch["input_ids"].size))
        return outputs

    def run(self, batch):
        raise NotImplementedError


class TorchEngine(Engine):
    """The PyTorch model at `precision` (auto: bf16 where the CPU has it, as training chose)."""

    def __init__(self, folder, batch_size, precision="auto", serves=None):
        import torch

        from finetune.models import load_classifier, resolved_precision

        super().__init__(folder, batch_size, serves)
        self.torch = torch
        self.precision = resolved_precision(precision)
        self.model = load_classifier(str(folder)).eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        # Models without segment embeddings (DistilBERT) take no token_type_ids, which a BERT
        # tokenizer still gives: feed what forward() takes.
        self.inputs = set(inspect.signature(self.model.forward).parameters)

    def run(self, batch):
        torch = self.torch
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device, dtype=dtype, enabled=dtype is not None):
            tensors = {name: torch.from_numpy(values).to(self.device) for name, values in batch.items()
                       if name in self.inputs}
            return self.model(**tensors).logits.float().cpu().numpy()


class OnnxEngine(Engine):
    """An exported model (exported/model.onnx or model-int8.onnx) on ONNX Runtime's CPU provider,
    on the threads this process may use (finetune/processes.py) or `threads`."""

    def __init__(self, folder, batch_size, file_name, threads=None):
        import onnxruntime

        super().__init__(folder, batch_size)
        path = self.folder / file_name
        if not path.is_file():
            raise PipelineError(f"{path} not found: run `dvc repro export` first")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]

    def run(self, batch):
        # Some models take no token_type_ids (DistilBERT, RoBERTa): feed what the graph names.
        return self.session.run(["logits"], {name: batch[name].astype(np.int64) for name in self.inputs})[0]


def load_engine(name, model_folder, exported_folder, batch_size, precision="auto"):
    """The engine `name` (torch, onnx, int8) over models/ (torch) or exported/ (onnx, int8)."""
    if name == "torch":
        return TorchEngine(model_folder, batch_size, precision)
    if name in ("onnx", "int8"):
        return OnnxEngine(exported_folder, batch_size, ONNX_FILE if name == "onnx" else INT8_FILE)
    raise PipelineError(f"engine {name!r}: one of {', '.join(ENGINES)}")
