"""One typed, validated view of params.yaml, loaded the same way by every stage.

The documentation of each key lives in params.yaml itself; this module only knows its
type and the values it may take, and rejects anything else before any work is done.
"""

import dataclasses
import json
import math
import re
from pathlib import Path

import yaml

from finetune.core.errors import PipelineError
from finetune.core.metrics import LOSS, METRICS
from finetune.core.paths import PARAMS_FILE

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
HUB_DATASET = "nyu-mll/glue"
AUTO = "auto"
STEPS_OR_AUTO = ("eval_steps", "save_steps")  # each `auto` or a number of steps
PROCESSES = "processes"  # `auto` (every visible GPU, else 1) or a number (finetune/processes.py)
# A search trial: "<study>/<number>", the study named as `finetune search --study` accepts it.
TRIAL = re.compile(r"(?P<study>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<number>\d+)")


@dataclasses.dataclass(frozen=True)
class Params:
    dataset: str
    dataset_config: str
    text_columns: tuple
    label_column: str | tuple  # one column, or several 0/1 columns: a multi-label task of their names
    label_delimiter: str  # "" or what separates the label names of one text cell (multi-label)
    allow_empty_labels: bool
    checkpoint: str
    max_length: int
    seed: int
    lr: float
    epochs: float
    max_steps: int
    train_batch_size: int
    eval_batch_size: int
    weight_decay: float
    dropout: float
    class_weights: str | dict  # "none", "balanced" or {label name: weight} (finetune/training/class_weights.py)
    freeze_embeddings: bool
    cpu_speedups: bool
    warmup_ratio: float
    lr_scheduler: str
    precision: str
    processes: int | str  # "auto" or how many processes train and evaluate start on this machine
    group_by_length: bool
    eval_steps: int | str  # "auto" (finetune/training/evaluations.py) or steps
    eval_sample_size: int
    logging_steps: int
    early_stopping_patience: int
    best_model_metric: str
    save_steps: int | str  # "auto": at every evaluation, or steps
    keep_checkpoints: int
    multi_label_threshold: float
    bootstrap_resamples: int
    bootstrap_seed: int
    diagnose_baseline_margin: float
    diagnose_loss_spread: float
    diagnose_loss_rise: float
    diagnose_accuracy_gap: float
    diagnose_window: int
    trial: str  # "" or "<study>/<number>": a trial of `finetune search` (finetune/training/pruning.py)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-05` as a float, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where a float needs a dot, so `1e-05` (what
    `dvc exp run -S lr=1e-5` writes back to params.yaml) would be the string "1e-05".
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text):
    """YAML as params.yaml is written, by people or by DVC (1e-05 is a float)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def load_params(path=PARAMS_FILE):
    try:
        with open(path) as params_file:
            raw = read_yaml(params_file)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stage from the project root") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must be a mapping of key: value, got {type(raw).__name__}")
    return parse_params(raw, source=path)


# Whatever else differs, these do not make two runs different configurations: runs that differ
# only in them are seeds of one configuration, compared as a group (finetune pick).
NOT_CONFIGURATION = ("seed", "trial")


def configuration(params):
    """{param: value} of a run's params (a dict) but NOT_CONFIGURATION."""
    return {name: value for name, value in params.items() if name not in NOT_CONFIGURATION}


def params_table(params):
    """Markdown lines: every param of the run with its value, in params.yaml's order.

    The report and the model card list them all: a list of only the params that changed would
    depend on what it is compared with (another commit's params.yaml), which is no input of theirs;
    `dvc params diff` compares commits."""
    rows = [f"| `{name}` | `{json.dumps(list(value) if isinstance(value, tuple) else value)}` |"
            for name, value in dataclasses.asdict(params).items()]
    return ["| param | value |", "|---|---|", *rows]


def parse_params(raw, source=PARAMS_FILE):
    fields = {field.name: field.type for field in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PipelineError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(fields)})")
    missing = [name for name in fields if name not in raw]
    if missing:
        raise PipelineError(f"{source}: missing key {missing[0]!r}")
    values = {name: _typed(source, name, raw[name], expected) for name, expected in fields.items()}
    params = Params(**values)
    _check_ranges(source, params)
    return params


def _typed(source, name, value, expected):
    if name == "class_weights":
        return _class_weights(source, value)
    if name == "label_column":  # a column, or a list of 0/1 columns
        expected = tuple if isinstance(value, list) else str
    if name in (*STEPS_OR_AUTO, PROCESSES):
        if value == AUTO or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        what = "processes" if name == PROCESSES else "steps"
        raise PipelineError(f"{source}: {name} must be auto or a number of {what}, got {value!r}")
    if name == "label_delimiter":
        if isinstance(value, str):  # names are stripped of spaces after the split: "," reads "a, b"
            return value
        raise PipelineError(f"{source}: label_delimiter must be a string (\"\": one label per cell), got {value!r}")
    if expected is tuple:
        if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
            return tuple(value)
        raise PipelineError(f"{source}: {name} must be {'a column name or ' if name == 'label_column' else ''}"
                            f"a list of column names, got {value!r}")
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise PipelineError(f"{source}: {name} must be true or false, got {value!r}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise PipelineError(f"{source}: {name} must be an integer, got {value!r}")
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise PipelineError(f"{source}: {name} must be a number, got {value!r}")
    if isinstance(value, str) and (value.strip() or name == "trial"):
        return value
    raise PipelineError(f"{source}: {name} must be a non-empty string, got {value!r}")


CLASS_WEIGHTINGS = ("none", "balanced")


def _is_folder(name):
    """Path.is_dir, False also for a name longer than the file system allows, where Python 3.11's
    is_dir raises (ENAMETOOLONG) rather than answer."""
    try:
        return Path(name).is_dir()
    except OSError:
        return False


def _class_weights(source, value):
    """`class_weights` as written: none, balanced, or {label: weight > 0}; labels as text, as the
    task names them (YAML reads a label 1 as a number). The task's own labels are checked by train."""
    if value in CLASS_WEIGHTINGS:
        return value
    if isinstance(value, dict) and value:
        weights = {}
        for label, weight in value.items():
            if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
                raise PipelineError(f"{source}: class_weights: {label!r} is not a label name")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                    math.isfinite(weight) and weight > 0):
                raise PipelineError(f"{source}: class_weights: the weight of {label!r} must be a number > 0, "
                                    f"got {weight!r}")
            weights[str(label)] = float(weight)
        return weights
    raise PipelineError(f"{source}: class_weights must be none, balanced or {{label: weight, ...}}, got {value!r}")


def _check_ranges(source, params):
    def require(condition, key, rule):
        if not condition:
            raise PipelineError(f"{source}: {key} {rule}, got {getattr(params, key)!r}")

    def require_choice(key, choices):
        require(getattr(params, key) in choices, key, f"must be one of {', '.join(choices)}")

    require(params.max_length > 0, "max_length", "must be > 0")
    require(params.lr > 0, "lr", "must be > 0")
    require(params.epochs > 0, "epochs", "must be > 0")
    require(params.max_steps == -1 or params.max_steps > 0, "max_steps", "must be -1 (all epochs) or > 0")
    require(params.train_batch_size > 0, "train_batch_size", "must be > 0")
    require(params.eval_batch_size > 0, "eval_batch_size", "must be > 0")
    require(params.weight_decay >= 0, "weight_decay", "must be >= 0")
    require(0 <= params.dropout < 1, "dropout", "must be in [0, 1)")
    require(0 <= params.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
    require(params.eval_steps == AUTO or params.eval_steps > 0, "eval_steps", "must be auto or > 0")
    require(params.eval_sample_size > 0, "eval_sample_size", "must be > 0")
    require(params.logging_steps > 0, "logging_steps", "must be > 0")
    require(params.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0 (0 = off)")
    require(params.save_steps == AUTO or params.save_steps > 0, "save_steps", "must be auto or > 0")
    require(params.processes == AUTO or params.processes > 0, "processes", "must be auto or > 0")
    require(params.keep_checkpoints > 0, "keep_checkpoints", "must be > 0")
    # transformers' set_seed seeds NumPy's legacy generator too, which takes 32-bit seeds only.
    require(0 <= params.seed < 2**32, "seed", "must be in [0, 2**32)")
    # Beyond a million, intervals move in the fifth decimal while the stage takes minutes.
    require(0 < params.multi_label_threshold < 1, "multi_label_threshold", "must be in (0, 1)")
    require(100 <= params.bootstrap_resamples <= 1_000_000, "bootstrap_resamples", "must be in [100, 1000000]")
    require(0 <= params.bootstrap_seed < 2**128, "bootstrap_seed", "must be in [0, 2**128)")
    require(params.diagnose_baseline_margin >= 0, "diagnose_baseline_margin", "must be >= 0")
    require(params.diagnose_loss_spread > 0, "diagnose_loss_spread", "must be > 0")
    require(params.diagnose_loss_rise >= 0, "diagnose_loss_rise", "must be >= 0")
    require(params.diagnose_accuracy_gap >= 0, "diagnose_accuracy_gap", "must be >= 0")
    require(params.diagnose_window >= 2, "diagnose_window", "must be >= 2")
    require(params.trial == "" or TRIAL.fullmatch(params.trial), "trial",
            "must be \"\" or <study>/<trial number> (set by `finetune search`)")
    require_choice("lr_scheduler", LR_SCHEDULERS)
    require_choice("precision", PRECISIONS)
    require_choice("best_model_metric", ("auto", LOSS, *METRICS))
    require(params.dataset == HUB_DATASET or _is_folder(params.dataset), "dataset",
            f"must be {HUB_DATASET} (with a GLUE dataset_config) or a folder of your own data files")
    if params.dataset == HUB_DATASET:
        require(params.text_columns == (), "text_columns",
                "must be [] for a GLUE task, which names its own columns (text_columns is for your own data)")
        require(params.label_delimiter == "", "label_delimiter",
                "must be \"\" for a GLUE task, whose labels are single classes (label_delimiter is for your own data)")
    else:
        require(1 <= len(params.text_columns) <= 2, "text_columns",
                f"must name one or two columns of the files in {params.dataset} (a sentence, or a pair)")
    if isinstance(params.label_column, tuple):
        columns = params.label_column
        if len(columns) < 2 or len(set(columns)) < len(columns):
            raise PipelineError(f"{source}: label_column must name one column, or two or more distinct 0/1 columns "
                                f"(one per label), got {list(columns)!r}")
        require(params.label_delimiter == "", "label_delimiter",
                "must be \"\" when label_column names 0/1 columns, which hold no label names")
    # Combinations that would run, but not as asked.
    # With eval_steps auto, train checks this once it knows the run's steps (finetune/training/evaluations.py).
    if AUTO not in (params.eval_steps, params.save_steps):
        require(params.early_stopping_patience == 0 or params.save_steps % params.eval_steps == 0, "save_steps",
                f"must be a multiple of eval_steps ({params.eval_steps}) with early stopping, which keeps the best "
                "evaluation's checkpoint (or auto: at every evaluation)")
    require(params.warmup_ratio == 0 or params.lr_scheduler != "constant", "warmup_ratio",
            "must be 0 with lr_scheduler constant, which has no warm-up (use constant_with_warmup)")
    if params.precision == "fp16":
        import torch  # only here: most stages never need it

        require(torch.cuda.is_available(), "precision", "fp16 needs a CUDA GPU (use bf16 or fp32 on a CPU)")
