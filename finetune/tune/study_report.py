"""A study's report: its trials as a table, and Optuna's views as PNGs (optimisation history, param
importances, parallel coordinates), in tuning/<study>/. For a live page of the same storage:
`optuna-dashboard <storage URL>`."""

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import optuna.visualization.matplotlib as views  # noqa: E402
from optuna.storages import RetryHeartbeatStaleTrialCallback  # noqa: E402

from finetune.core.outputs import atomic_output  # noqa: E402

REPORT_FILE = "report.md"


def write_study_report(study, folder):
    """report.md and its PNGs in `folder` (written whole, then put in place); returns the PNGs' names."""
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    varied = {name for trial in complete for name in trial.params}
    figures = {"optimization_history.png": (views.plot_optimization_history, bool(complete),
                                            "no complete trial yet"),
               "param_importances.png": (views.plot_param_importances, len(complete) >= 2 and len(varied) >= 2,
                                         "needs two complete trials and two params searched"),
               "parallel_coordinate.png": (views.plot_parallel_coordinate, bool(complete), "no complete trial yet")}
    drawn, skipped = [], []
    with atomic_output(folder / "figures") as staging:
        staging.mkdir(parents=True)
        for name, (view, possible, reason) in figures.items():
            if not possible:
                skipped.append(f"{name}: {reason}")
                continue
            axes = view(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(9, 5)
            figure.savefig(staging / name, dpi=100, bbox_inches="tight")
            plt.close(figure)
            drawn.append(name)
    with atomic_output(folder / REPORT_FILE) as staging:
        staging.write_text(_report(study, trials, drawn, skipped))
    return drawn


def _report(study, trials, drawn, skipped):
    metric = study.user_attrs.get("metric", "value")
    counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in optuna.trial.TrialState}
    lines = [f"# Study `{study.study_name}`", "",
             f"{study.direction.name.lower().capitalize()}s {metric}; trials: "
             + ", ".join(f"{count} {state}" for state, count in counts.items() if count) + ".", ""]
    if any(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials):
        best = study.best_trial
        lines += [f"Best: trial {best.number} (`{best.user_attrs.get('experiment')}`), {metric} {best.value:.4f}, "
                  + ", ".join(f"`{name}` {_value(value)}" for name, value in best.params.items()) + ".", ""]
    names = sorted({name for trial in trials for name in trial.params})
    lines += ["| trial | experiment | state | " + " | ".join(names) + f" | {metric} | note |",
              "|---" * (len(names) + 5) + "|"]
    for trial in trials:
        value = f"{trial.value:.4f}" if trial.value is not None else ""
        if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            last = max(trial.intermediate_values)
            value = f"({trial.intermediate_values[last]:.4f} after {last} examples)"
        notes = []
        if RetryHeartbeatStaleTrialCallback.retry_history(trial):
            notes.append(f"retry of trial {RetryHeartbeatStaleTrialCallback.retry_history(trial)[-1]}")
        if trial.state == optuna.trial.TrialState.FAIL:
            notes.append(trial.user_attrs.get("error") or "interrupted")
        if trial.user_attrs.get("push_error"):
            notes.append(f"not pushed: {trial.user_attrs['push_error']}")
        note = "; ".join(notes)
        cells = [str(trial.number), f"`{trial.user_attrs.get('experiment', '')}`", trial.state.name.lower(),
                 *(_value(trial.params[name]) if name in trial.params else "" for name in names), value, note]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"![{name}](figures/{name})" for name in drawn)]
    lines += [f"(not drawn: {reason})" for reason in skipped]
    return "\n".join(lines) + "\n"


def _value(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)
