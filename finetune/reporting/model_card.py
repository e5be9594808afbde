"""The model card of models/: README.md in the Hugging Face format, YAML metadata then prose.

huggingface_hub's ModelCardData writes the metadata (library, pipeline tag, base model,
datasets, metrics and the model-index of results), so the Hub and tools that read cards
(DVC Studio's model registry shows README.md too) parse it as they parse any other card. The
prose says what a user of the model asks: what it predicts, how to load it, how well it does
(with the evaluate stage's 95% intervals), how it was trained and from which exact data.
"""

import dataclasses
import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from finetune.core.metrics import LOSS, METRICS, interval_text
from finetune.core.params import HUB_DATASET, configuration, params_table
from finetune.core.paths import EVALUATION_METRICS_FILE, EXPORT_METRICS_FILE, EXPORTED_DIR, PROVENANCE_FILE
from finetune.serving.served import INT8_FILE, ONNX_FILE

# The name dvc.yaml's `artifacts:` gives models/ (dvc artifacts get, DVC Studio's model registry).
ARTIFACT_NAME = "text-classifier"
# An example input for the usage snippet: one sentence, or a pair (the MRPC kind of pair).
EXAMPLE_PAIR = ("The company said its profit rose 5 percent.", "Its profit went up 5 percent, the company said.")


def model_card(params, task, evaluation, training, provenance, selection, export=None):
    """The card's text. `evaluation`, `training`, `provenance`: the JSON of metrics/evaluation.json,
    metrics/train.json and data/raw/provenance.json; `selection`: selection.json's, the evidence
    `finetune pick --promote` recorded for a configuration (shown when it is this run's); `export`:
    metrics/export.json's, the exported ONNX models checked against PyTorch."""
    glue = params.dataset == HUB_DATASET
    dataset_name = f"GLUE {task.name.upper()}" if glue else f"own data {params.dataset}"
    scored = [split for split in task.evaluated_splits if f"{split}_loss" in evaluation]  # labelled splits
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=HUB_DATASET if glue else params.dataset, dataset_name=dataset_name,
                          dataset_config=params.dataset_config if glue else None, dataset_split=split,
                          metric_type=metric, metric_value=round(evaluation[f"{split}_{metric}"], 4),
                          metric_name=f"{METRICS[metric].title} ({split})")
               for split in scored for metric in task.metrics]
    # base_model must be a Hub id: a local checkpoint folder is named in the prose only.
    base_model = None if Path(params.checkpoint).is_dir() else params.checkpoint
    metadata = ModelCardData(
        library_name="transformers", pipeline_tag="text-classification", base_model=base_model,
        datasets=[HUB_DATASET] if glue else None, metrics=list(task.metrics), tags=["dvc", task.name],
        model_name=f"{params.checkpoint.rstrip('/').split('/')[-1]}-{task.name}", eval_results=results or None)
    names = ', '.join(f'`{name}`' for name in task.label_names) if task.label_names else ""
    if task.regression:
        what = "a score (regression)"
    elif task.multi_label:
        what = (f"any of {names}, each label with its own sigmoid probability; this run counted a label as given "
                f"at probability {params.multi_label_threshold} or more (`multi_label_threshold`)")
    else:
        what = f"one of {names}"
    lines = [
        "---", metadata.to_yaml(), "---", "",
        f"# {params.checkpoint} fine-tuned on {dataset_name}", "",
        f"Reads {' and '.join(f'`{column}`' for column in task.text_columns)} and predicts {what}. "
        f"Fine-tuned from `{params.checkpoint}` by this project's DVC pipeline (`dvc repro`); "
        "this folder is its `models/` output, declared in `dvc.yaml` as the artifact "
        f"`{ARTIFACT_NAME}`.", "",
        *(_trial_note(params, training) if params.trial else _usage(task, params)),
        *_results(task, scored, evaluation, params), *_exported(task, export or {}), *_selection(params, selection),
        *_training(params, task, training),
        *_data(provenance),
    ]
    return "\n".join(lines) + "\n"


def _usage(task, params):
    if len(task.text_columns) == 2:
        call = f'classifier({{"text": "{EXAMPLE_PAIR[0]}", "text_pair": "{EXAMPLE_PAIR[1]}"}})'
    else:
        call = f'classifier("{EXAMPLE_PAIR[0]}")'
    # A regression's one output is the score itself: no softmax over one "class". A multi-label
    # model's config says multi_label_classification, so pipeline() applies a sigmoid per label.
    options = ', function_to_apply="none"' if task.regression else ", top_k=None" if task.multi_label else ""
    # A list in, a list of results out: one text's result is its every label with its probability.
    listed = "classifier([" + call.removeprefix("classifier(")[:-1] + "])[0]"
    given = ([f"scores = {listed}", f"print([score[\"label\"] for score in scores if score[\"score\"] >= "
              f"{params.multi_label_threshold}])"] if task.multi_label else [f"print({call})"])
    return ["## How to use", "", "```python", "from transformers import pipeline", "",
            f'classifier = pipeline("text-classification", model="models"{options})',
            *given, "```", "",
            f"From another clone or machine: `dvc artifacts get <repository URL> {ARTIFACT_NAME}` "
            "downloads this folder from the project's DVC remote.", ""]


def _exported(task, export):
    """The export stage's ONNX models: how to load them, and how far they are from PyTorch."""
    if not export.get("exported"):
        return []
    lines = ["## ONNX and int8", "",
             f"The `export` stage writes `{EXPORTED_DIR}/`: `{ONNX_FILE}` (fp32) and `{INT8_FILE}` (int8 weights, "
             "dynamic quantisation) with this tokenizer, for ONNX Runtime on a CPU: `finetune predict FILE --engine "
             "onnx|int8`, or by hand:", "", "```python", "import onnxruntime",
             "from transformers import AutoTokenizer", "",
             f'tokenizer = AutoTokenizer.from_pretrained("{EXPORTED_DIR}")',
             f'session = onnxruntime.InferenceSession("{EXPORTED_DIR}/{INT8_FILE}")',
             f"batch = tokenizer({', '.join(['[...]'] * len(task.text_columns))}, padding=True, truncation=True, "
             "return_tensors=\"np\")",
             f'logits = session.run(["logits"], {{name: batch[name] for name in {export["inputs"]}}})[0]', "```", "",
             f"Scored on validation beside PyTorch in fp32 (`{EXPORT_METRICS_FILE}`):", "",
             f"| split | engine | {task.main_metric} | same prediction as PyTorch | largest probability difference |",
             "|---|---|---|---|---|"]
    warnings = []
    for split in task.validation_splits:
        scores = export[split]
        for engine in ("torch_fp32", "onnx", "int8"):
            agreement = scores[engine].get("agreement")
            difference = scores[engine].get("max_probability_difference", scores[engine].get("max_prediction_difference"))
            lines.append(f"| {split} | {engine} | {scores[engine][task.main_metric]:.4f} | "
                         f"{'' if agreement is None else f'{agreement:.2%}'} | "
                         f"{'' if difference is None else f'{difference:.4f}'} |")
        if not scores["int8_within_tolerance"]:
            warnings.append(f"**Warning**: int8 loses {scores[f'int8_{task.main_metric}_loss'] * 100:.1f} points of "
                            f"{split} {task.main_metric}, more than the seed noise: serve `{ONNX_FILE}` or PyTorch.")
    return [*lines, "", *(line for warning in warnings for line in (warning, ""))]


def _trial_note(params, training):
    state = "pruned by the study" if training.get("trial_state") == "pruned" else "complete"
    return ["## A search trial", "",
            f"Trial `{params.trial}` of `finetune search` ({state}): it keeps no weights, only its validation "
            "scores. Its params with `trial: \"\"` train the model (`finetune pick --promote` does).", ""]


def _results(task, scored, evaluation, params):
    if not scored:
        return ["## Results", "", "No evaluated split has labels.", ""]
    lines = ["## Results", "",
             f"From `{EVALUATION_METRICS_FILE}` (the `evaluate` stage); in brackets the 95% percentile-bootstrap "
             f"interval ({params.bootstrap_resamples} resamples, seed {params.bootstrap_seed}).", "",
             "| split | metric | value | 95% interval |", "|---|---|---|---|"]
    for split in scored:
        for metric in (*task.metrics, LOSS):
            key = f"{split}_{metric}"
            lines.append(f"| {split} | {metric} | {evaluation[key]:.4f} | {interval_text(evaluation, key)} |")
    return [*lines, ""]


def _selection(params, selection):
    # As selection.json holds it, through JSON (its lists are params.yaml's lists, not tuples).
    if selection.get("configuration") != json.loads(json.dumps(configuration(dataclasses.asdict(params)))):
        return []
    changes = ", ".join(f"`{name}: {value}`" for name, value in selection["changes"].items()) or "no param"
    return ["## Selection", "",
            f"Promoted by `finetune pick` over {selection['baseline']} ({changes} changed; its run "
            f"`{selection['experiment']}`): {selection['sentence']}.", ""]


def _training(params, task, training):
    steps = (f"{training['trained_steps']} steps ({training['trained_epochs']} epochs"
             f"{', stopped early' if training['stopped_early'] else ''}); the saved model is step "
             f"{training['saved_model_step']}'s.")
    lines = ["## Training", "",
             f"Base checkpoint `{params.checkpoint}`, `max_length` {params.max_length}, learning rate {params.lr} "
             f"({params.lr_scheduler}, warm-up ratio {params.warmup_ratio}), batches of {params.train_batch_size}, "
             f"dropout {params.dropout}, embeddings {'frozen' if params.freeze_embeddings else 'trained'}, "
             f"seed {params.seed}, {_precision(params, training)}: {steps}{_class_weights(params, task, training)}", "",
             "<details><summary>Every param of the run (<code>params.yaml</code>)</summary>", "",
             *params_table(params), "", "</details>"]
    return [*lines, ""]


def _class_weights(params, task, training):
    weights = training.get("class_weights_used")
    if not weights:
        return ""
    shown = ", ".join(f"{label} {weights[label]:g}" for label in task.label_names)
    if task.multi_label:
        rule = " (`balanced`: its negatives / positives in train)" if params.class_weights == "balanced" else ""
        return f" The loss weighted each label's positives: {shown}{rule}."
    rule = " (`balanced`: n / (classes x count) of train)" if params.class_weights == "balanced" else ""
    return f" The loss weighted each class: {shown}{rule}."


def _precision(params, training):
    used = f"precision `{training['precision_used']}`"
    return f"{used} (what `auto` chose on the training host)" if params.precision == "auto" else used


def _data(provenance):
    """The splits as data/raw holds them, and the source files they were read from, each with its SHA-256."""
    source = provenance["source"]
    config = f" ({provenance['config']})" if provenance["config"] else ""
    origin = "the Hugging Face Hub" if source["kind"] == "hub" else f"local {source['layout']} files"
    lines = ["## Data", "", f"`{provenance['dataset']}`{config}, read from {origin}; the splits as "
             f"`{PROVENANCE_FILE}` records them:", "", "| split | rows | SHA-256 |", "|---|---|---|"]
    lines += [f"| {split} | {entry['rows']} | `{entry['sha256']}` |" for split, entry in provenance["splits"].items()]
    if source.get("files_sha256"):
        lines += ["", "| source file | SHA-256 |", "|---|---|"]
        lines += [f"| `{name}` | `{digest}` |" for name, digest in source["files_sha256"].items()]
    return [*lines, ""]
