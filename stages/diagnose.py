"""Stage `diagnose`: read the learning curves as the course teaches, and give a verdict.

healthy | overfitting | underfitting | erratic, with the numbers behind it, in
metrics/diagnosis.json (finetune/reporting/diagnosis.py says how each verdict is reached).
"""

import json

from finetune.core.errors import PipelineError, run_stage
from finetune.core.outputs import read_csv, write_json
from finetune.core.params import load_params
from finetune.core.paths import DIAGNOSIS_FILE, EVALUATED_ROWS_FILE, EVALUATION_HISTORY_FILE, TRAIN_HISTORY_FILE
from finetune.core.tasks import load_task
from finetune.reporting.diagnosis import baseline, diagnose, explanation


def read_history(path):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro train` first")
    return [{key: float(value) if key != "step" else int(value) for key, value in row.items()}
            for row in read_csv(path)]


def main():
    params = load_params()
    task = load_task()
    diagnosis = diagnose(task, read_history(TRAIN_HISTORY_FILE), read_history(EVALUATION_HISTORY_FILE),
                         baseline(task), params)
    # Which rows the curves scored: a sample of a large validation split (finetune/training/evaluations.py).
    evaluated = json.loads(EVALUATED_ROWS_FILE.read_text())[task.validation_splits[0]]
    diagnosis.update({"curves_validation_rows": evaluated["rows"], "validation_rows": evaluated["of"]})
    write_json(DIAGNOSIS_FILE, diagnosis)
    print(f"diagnose: {explanation(task, diagnosis, params)} -> {DIAGNOSIS_FILE}")


if __name__ == "__main__":
    run_stage(main)
