"""The CPU speed-ups of training, as one layer that the `cpu_speedups` param switches.

Each reaches into a framework's internals for a measured reason (docs/speed.md):
  - glibc keeps freed memory: fewer page faults on every step (`allocator.py`);
  - fast dropout: dropout masks from cheap random bits, and plain attention while an encoder
    trains on a CPU, where PyTorch's fused attention was slower (`dropout.py`: transformers'
    AttentionInterface and mask-function registries);
  - first token only: a BERT classifier's last layer computed for the [CLS] token its head
    reads (`first_token_head.py`: BertLayer's forward and transformers' attention functions).
Each keeps the model's results (tests/test_cpu_speedups.py compares logits, losses and
gradients with transformers' own code, and fails when that code changes under it). Nothing
is saved with the model: any program loads and runs it with transformers' stock code.
"""


from finetune.training.cpu_speedups.allocator import keep_freed_memory
from finetune.training.cpu_speedups.dropout import use_fast_cpu_dropout, use_plain_attention
from finetune.training.cpu_speedups.first_token_head import compute_last_layer_for_first_token_only


def apply_cpu_speedups(model, on_cpu):
    """Apply every speed-up that fits `model` and the device; returns a one-line summary."""
    applied, skipped = [], []

    def outcome(name, reason_skipped):
        (skipped if reason_skipped else applied).append(f"{name} ({reason_skipped})" if reason_skipped else name)

    if on_cpu:
        outcome("glibc keeps freed memory", None if keep_freed_memory() else "not glibc")
        outcome("fast dropout masks", None if use_fast_cpu_dropout(model) else "no dropout > 0")
        outcome("plain attention in training",
                None if use_plain_attention(model) else f"{model.config._attn_implementation} attention")
    else:
        skipped.append("glibc, dropout and attention switches (training on a GPU)")
    outcome("last layer for [CLS] only",
            None if compute_last_layer_for_first_token_only(model) else f"not a BERT classifier: {type(model).__name__}")
    return f"applied: {', '.join(applied) or 'none'}; skipped: {', '.join(skipped) or 'none'}"
