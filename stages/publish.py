"""Stage `publish`: models/, the model a team shares: the trained model plus its model card.

models/ is the `text-classifier` artifact of dvc.yaml (`dvc artifacts get`, DVC Studio's model
registry) and what `pipeline("text-classification", model="models")` loads. Its README.md is the
model card (finetune/reporting/model_card.py), which needs evaluate's metrics: DVC lets one stage write an
output, so train writes trained_model/, evaluate scores it, export converts it, and this stage
publishes them: the weights, the card and task.json (what `finetune predict` serves).
"""

import json
import time

from finetune.core.errors import PipelineError, run_stage
from finetune.core.outputs import atomic_output, link_tree
from finetune.core.params import load_params
from finetune.core.paths import (
    EVALUATION_METRICS_FILE,
    EXPORT_METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_DIR,
    PROVENANCE_FILE,
    SELECTION_FILE,
    TRAIN_METRICS_FILE,
    TRAINED_MODEL_DIR,
    trained_model_dir,
)
from finetune.core.tasks import load_task
from finetune.reporting.model_card import model_card
from finetune.serving.served import SERVING_FILE, Served


def main():
    params = load_params()
    task = load_task()
    started = time.perf_counter()
    trained = trained_model_dir()
    evaluation, training, provenance = (_read_json(path, stage) for path, stage in (
        (EVALUATION_METRICS_FILE, "evaluate"), (TRAIN_METRICS_FILE, "train"), (PROVENANCE_FILE, "download")))
    # dvc.yaml makes it a dep, so DVC requires it; a stage run by hand without it has no selection.
    selection = json.loads(SELECTION_FILE.read_text()) if SELECTION_FILE.is_file() else {}
    export = json.loads(EXPORT_METRICS_FILE.read_text()) if EXPORT_METRICS_FILE.is_file() else {}
    card = model_card(params, task, evaluation, training, provenance, selection, export)
    with atomic_output(MODEL_DIR) as staging:
        # The card replaces any README.md of the trained folder (Trainer writes none today).
        copied = link_tree(trained, staging, skip=(MODEL_CARD_FILE.name,))
        (staging / MODEL_CARD_FILE.name).write_text(card)
        # What `finetune predict` needs to serve the folder: the task, max_length, the threshold.
        (staging / SERVING_FILE).write_text(Served(task, params.max_length, params.multi_label_threshold).to_json())
        files = sum(1 for path in staging.rglob("*") if path.is_file())
    how = f"{copied} copied, the rest hard-linked" if copied else "hard-linked"
    print(f"publish: {files - 2} model files from {TRAINED_MODEL_DIR}/ ({how}) and the model card "
          f"{MODEL_CARD_FILE.name} -> {MODEL_DIR}/ in {time.perf_counter() - started:.1f}s")


def _read_json(path, stage):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro {stage}` first")
    return json.loads(path.read_text())


if __name__ == "__main__":
    run_stage(main)
