"""What a model folder (models/, exported/) serves, in its task.json: the task's text columns, labels
and kind, the max_length it was trained at and the multi-label threshold. `finetune predict` reads
it, so a folder fetched from another revision or the registry predicts as its own run did."""

import dataclasses
import json
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.tasks import Task

SERVING_FILE = "task.json"  # in models/ and exported/: the task, max_length, multi_label_threshold
# The export stage's models in exported/ (the model card names them too).
ONNX_FILE, INT8_FILE = "model.onnx", "model-int8.onnx"


@dataclasses.dataclass(frozen=True)
class Served:
    """What a model folder serves: its task, the max_length it was trained at and the multi-label threshold."""
    task: Task
    max_length: int
    multi_label_threshold: float

    def to_json(self):
        return json.dumps({**dataclasses.asdict(self.task), "max_length": self.max_length,
                           "multi_label_threshold": self.multi_label_threshold}, indent=2) + "\n"


def served(folder):
    """The Served of a model folder (models/ or exported/); a one-line error where it has none."""
    path = Path(folder) / SERVING_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: {folder} is not a model folder the publish stage made "
                            "(run `dvc repro publish`)")
    fields = json.loads(path.read_text())
    max_length, threshold = fields.pop("max_length"), fields.pop("multi_label_threshold")
    task = Task(**{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()})
    return Served(task, max_length, threshold)
