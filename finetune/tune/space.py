"""The search space of `finetune search`: params.yaml keys and the values a study may try, from a
YAML file in the repository (search.yaml by default):

    lr: {low: 1.0e-5, high: 3.0e-4, log: true}   # a float range, log-uniform
    epochs: {low: 2, high: 5}                    # integer bounds: whole values only
    warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}
    train_batch_size: {choices: [16, 32, 64]}    # a choice

Every bound, step and choice is checked as params.yaml would check it (a batch size of 8.5, a
learning rate of 0, an unknown key all stop the search before its first trial, with one line).
"""

import dataclasses
import math
from pathlib import Path

import yaml

from finetune.core.errors import PipelineError
from finetune.core.params import Params, load_params, parse_params, read_yaml

# What a study may not vary: the param that makes a run a trial, and the metric the study optimises.
NOT_SEARCHABLE = ("trial", "best_model_metric")
_FIELDS = {field.name: field.type for field in dataclasses.fields(Params)}


@dataclasses.dataclass(frozen=True)
class Dimension:
    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """This dimension's value for an Optuna trial (TPE samples it from the study's history)."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int) and _FIELDS[self.name] is int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        if isinstance(self.low, int) and isinstance(self.high, int) and not self.log and self.step is None:
            return float(trial.suggest_int(self.name, self.low, self.high))  # a float param over whole values
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self):
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        scale = ", log scale" if self.log else ""
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.low} to {self.high}{step}{scale}"


def load_space(path, params_path="params.yaml"):
    """The dimensions of the search space file `path`, checked against `params_path`'s params."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such search space file") from None
    return parse_space(text, path, load_params(params_path))


def parse_space(text, path, params):
    """The dimensions of a search space file's `text` (named `path` in errors), checked against
    `params` (a Params)."""
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not raw:
        raise PipelineError(f"{path}: the search space is empty: name at least one params.yaml key")
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must be a mapping of params.yaml keys to ranges or choices")
    base = {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(params).items()}
    return [_dimension(path, name, spec, base) for name, spec in raw.items()]


def _dimension(path, name, spec, base):
    where = f"{path}: {name}"
    if name not in _FIELDS:
        raise PipelineError(f"{path}: unknown key {name!r}: not a params.yaml key (known keys: {', '.join(_FIELDS)})")
    if name in NOT_SEARCHABLE:
        raise PipelineError(f"{where} cannot be searched: "
                            + ("it names the study's metric" if name == "best_model_metric" else "it is set by the search"))
    if not isinstance(spec, dict) or not spec:
        raise PipelineError(f"{where} must be {{low: ..., high: ...}} (with log or step) or {{choices: [...]}}, "
                            f"got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log", "step", "choices"})
    if unknown:
        raise PipelineError(f"{where}: unknown field {unknown[0]!r} (low, high, log, step or choices)")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise PipelineError(f"{where}: choices must be a non-empty list, alone, got {spec!r}")
        for choice in spec["choices"]:
            _check_value(where, name, choice, base)
        return Dimension(name, choices=tuple(spec["choices"]))
    if "low" not in spec or "high" not in spec:
        raise PipelineError(f"{where}: a range needs low and high, got {spec!r}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if _FIELDS[name] not in (int, float):
        raise PipelineError(f"{where} is not a number ({_FIELDS[name].__name__}): give it choices, not a range")
    for bound in (low, high, *([step] if step is not None else [])):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise PipelineError(f"{where}: low, high and step must be numbers, got {bound!r}")
    if _FIELDS[name] is int and not all(isinstance(bound, int) for bound in (low, high, step or 1)):
        raise PipelineError(f"{where} takes integers: low, high and step must be whole, got {spec!r}")
    if not low < high:
        raise PipelineError(f"{where}: low must be below high, got low {low} and high {high}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise PipelineError(f"{where}: log must be true or false, and a log scale needs low > 0, got {spec!r}")
    if step is not None and (step <= 0 or log):
        raise PipelineError(f"{where}: step must be > 0, and not with a log scale, got {spec!r}")
    for bound in (low, high):
        _check_value(where, name, bound, base)
    return Dimension(name, low, high, log, step)


def _check_value(where, name, value, base):
    """`value` as params.yaml would take it for `name`, with every other param as in `base`."""
    try:
        parse_params({**base, name: value}, source="search space")
    except PipelineError as error:
        raise PipelineError(f"{where}: {value!r} is not a value params.yaml takes ({error})") from None
