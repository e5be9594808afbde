"""A trained model as ONNX, and its int8 variant, for ONNX Runtime on a CPU.

Optimum's ONNX exporter does not support transformers 5 yet (huggingface/optimum-onnx #114,
#141), so this uses torch.onnx.export itself: the TorchScript exporter (dynamo=False), with the
batch and sequence axes dynamic, traced with transformers' reference (eager) attention on a padded
batch, so that the graph masks pads; tests/test_export.py holds it to PyTorch's predictions on
batches padded otherwise than the traced one. `quantize_dynamic` makes the int8 variant. ONNX Runtime's offline transformer
fusions were measured no faster than those its session applies itself (MRPC's validation in
fp32: 1.94 s fused, 1.80 s as exported), so the graph is left as exported.
"""

import inspect
import re
from pathlib import Path

OPSET = 17  # LayerNormalization is an ONNX op from 17: one node, not a dozen
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The weight products int8 costs most accuracy in (names as torch.onnx.export gives them).
KEPT_IN_FP32 = re.compile(r"/layer\.0/|classifier|pooler")


def export_onnx(model_folder, onnx_path, max_length):
    """The model of `model_folder` as an ONNX graph at `onnx_path`; returns its input names."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from finetune.models import load_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_folder), attn_implementation="eager").eval()
    tokenizer = load_tokenizer(str(model_folder))
    taken = inspect.signature(model.forward).parameters
    sample = tokenizer(["a short text", "a longer text, so that the first of the two is padded"],
                       truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    # Models without segment embeddings (DistilBERT, RoBERTa) take no token_type_ids.
    names = [name for name in INPUT_NAMES if name in sample and name in taken]

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs, strict=True))).logits

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with torch.inference_mode():
        torch.onnx.export(Logits(), tuple(sample[name] for name in names), str(onnx_path), input_names=names,
                          output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return names


def quantise(onnx_path, int8_path):
    """int8 weights, activations quantised on the fly (dynamic quantisation), per output channel, in
    every weight product but the first encoder layer's and the head's (pooler, classifier).

    Measured on MRPC's validation (docs/measurements.md, "Serving"): int8 per tensor in every MatMul
    agreed with PyTorch on 93% of predictions, per channel on 97.3%, with those layers kept in fp32
    on 98.3%, still twice as fast as the fp32 graph. Without VNNI (an AVX2-only CPU) u8 x s8 products
    can saturate: weights then use 7 bits (reduce_range), as ONNX Runtime's documentation advises.
    Returns (whether the range was reduced, the products kept in fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = not has_vnni()
    products = [node.name for node in onnx.load(str(onnx_path)).graph.node if node.op_type in ("MatMul", "Gemm")]
    kept = [name for name in products if KEPT_IN_FP32.search(name)]
    quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8, reduce_range=reduce_range,
                     per_channel=True, nodes_to_exclude=kept, extra_options={"MatMulConstBOnly": True})
    return reduce_range, kept


def has_vnni():
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
