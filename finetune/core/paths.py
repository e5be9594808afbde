"""Where stages read and write, relative to the project root (DVC runs stages from there).

Each path here is declared in dvc.yaml as a dep or an output of the stage that uses it.
"""

from pathlib import Path

from finetune.core.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PROVENANCE_FILE = RAW_DIR / "provenance.json"
TASK_FILE = RAW_DIR / "task.json"
TOKENIZED_DIR = Path("data/tokenized")

# train writes the fine-tuned model to TRAINED_MODEL_DIR; evaluate scores it there; publish
# makes MODEL_DIR of it: the same files plus the model card, README.md. Two folders because DVC
# lets one stage write each output, and the card needs evaluate's metrics.
TRAINED_MODEL_DIR = Path("trained_model")
# A search trial's train stage keeps no weights; it scores validation itself and leaves the
# scores and predictions here, for evaluate to publish (finetune/training/pruning.py).
TRIAL_SCORES_DIR = TRAINED_MODEL_DIR / "trial"
TRIAL_SCORES_FILE = TRIAL_SCORES_DIR / "scores.json"
MODEL_DIR = Path("models")
MODEL_CARD_FILE = MODEL_DIR / "README.md"
# The export stage's: the model as ONNX and int8 ONNX with the tokenizer (finetune/serving/).
EXPORTED_DIR = Path("exported")
# Not a DVC output: resumable checkpoints of an unfinished train stage, which survive a
# killed or failed run (DVC removes only declared outputs) and never enter the cache.
CHECKPOINT_DIR = Path("checkpoints/train")

# What `finetune pick --promote` found for the committed params: the model card shows it.
SELECTION_FILE = Path("selection.json")

METRICS_DIR = Path("metrics")
TRAIN_METRICS_FILE = METRICS_DIR / "train.json"
EVALUATION_METRICS_FILE = METRICS_DIR / "evaluation.json"
DIAGNOSIS_FILE = METRICS_DIR / "diagnosis.json"
# Per class of a classification: precision, recall, F1 and count, per labelled split.
PER_CLASS_METRICS_FILE = METRICS_DIR / "per_class.json"
TRAIN_HISTORY_FILE = METRICS_DIR / "history" / "train.csv"
EVALUATION_HISTORY_FILE = METRICS_DIR / "history" / "evaluations.csv"
# The rows each evaluation during training scored: {set: {"rows": n, "of": the split's rows}}.
EVALUATED_ROWS_FILE = METRICS_DIR / "history" / "evaluated_rows.json"
# DVCLive's folder: metrics.json, the latest logged values and step while the train stage runs.
LIVE_DIR = METRICS_DIR / "live"
# The machine during training (finetune/training/system.py): DVCLive's system monitor's samples, and
# their peaks and means. Measurements, not results: no stage's output, dvc.yaml's metrics and plots.
MACHINE_DIR = METRICS_DIR / "machine"
MACHINE_FILE = METRICS_DIR / "machine.json"
PREDICTIONS_DIR = METRICS_DIR / "predictions"
# ROC, precision-recall and calibration curves of the validation predictions, a folder per kind.
CURVES_DIR = METRICS_DIR / "curves"
# The report (Markdown and its PNGs): a cached DVC output beside the metrics it shows.
REPORT_DIR = METRICS_DIR / "report"
# The exported models' validation scores and their agreement with PyTorch's predictions.
EXPORT_METRICS_FILE = METRICS_DIR / "export.json"


def trained_model_dir():
    """The train stage's model folder, for the stages after it; a one-line error without it."""
    if not (TRAINED_MODEL_DIR / "config.json").is_file():
        raise PipelineError(f"{TRAINED_MODEL_DIR}/ holds no trained model: run `dvc repro train` first")
    return TRAINED_MODEL_DIR


def raw_split_file(split):
    return RAW_DIR / f"{split}.parquet"


def predictions_file(split, folder=PREDICTIONS_DIR):
    return folder / f"{split}.csv"
