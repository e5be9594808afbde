"""`finetune pick`: rank runs with their seed noise in view, and promote a winner beyond noise.

The runs (a study's complete trials, named experiments, or every experiment of a commit) are
grouped by their params but `seed` and `trial`, ranked on validation by the metric the study
optimised (`best_model_metric`) averaged over seeds, and the best group is compared with the
baseline (the commit's own run and its seed variants, or a run you name) by a paired bootstrap
on the same validation examples (finetune/tune/compare.py). "No winner beyond noise" when the
interval of the difference holds 0.

--promote confirms the winner on what did not choose it: both sides re-run as plain runs (no
`trial`) on N fresh seeds, compared on the test split. Only if the winner still wins beyond
noise: applies its run of the first of those seeds (`dvc exp apply`, on a new branch with
--branch), writes the evidence to selection.json (the model card shows it), commits, and
registers the model artifact version as a Git tag in GTO's format, its message the evidence.
A step that fails leaves the repository as it was (finetune/tune/register.py).
"""

import dataclasses
import hashlib
import json
import math
import re
import subprocess
import types
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.metrics import LOSS
from finetune.core.params import configuration
from finetune.core.tasks import best_model_metric
from finetune.tune.compare import compare, confirmation_seeds, group_runs, labelled, ranked, task_of
from finetune.tune.experiments import Run, experiment, experiments, head, run_experiments, uncommitted_changes
from finetune.tune.register import register

REPORT = Path("tuning") / "pick.md"
# pick's own confirmation runs: they chose no winner, so their seeds stay free for the next
# confirmation, which then reuses them and cannot be re-drawn by running --promote again.
CONFIRMATION = re.compile(r"pick-.+-seed\d+")


@dataclasses.dataclass(frozen=True)
class Pick:
    key: str  # what the groups are ranked by
    groups: list  # ranked, best first
    baseline: object
    comparison: object | None  # best against baseline


def candidate_runs(study=None, names=(), rev=None):
    """The runs to rank: a study's complete trials (and plain runs of their params), named
    experiments but pruned trials, or every finished experiment of `rev` (default: HEAD)."""
    baseline_rev = head() if rev is None else _resolve(rev)
    recorded = experiments(baseline_rev)
    if names:
        missing = [name for name in names if name not in recorded]
        if missing:
            raise PipelineError(f"no experiment {missing[0]!r} of commit {baseline_rev[:7]}")
        # A pruned trial stopped early on a low score: its metrics are not a configuration's.
        pruned = [name for name in names if _pruned(recorded[name])]
        if pruned:
            print(f"pick: skipping pruned trial(s), stopped before the end: {', '.join(pruned)}")
        if len(pruned) == len(names):
            raise PipelineError(f"pick: every experiment named is a pruned trial ({', '.join(pruned)}): "
                                "name complete runs")
        return [recorded[name] for name in names if name not in pruned]
    runs = [run for run in recorded.values() if not _pruned(run) and run.evaluation]
    if study is None:
        return runs
    trials = [run for run in runs if run.params.get("trial", "").startswith(f"{study}/")]
    if not trials:
        raise PipelineError(f"no complete trial of study {study!r} among the experiments of {baseline_rev[:7]}")
    configurations = [configuration(run.params) for run in trials]
    return trials + [run for run in runs if not run.params.get("trial") and configuration(run.params) in configurations]


def baseline_runs(name=None):
    """The baseline: experiment `name` or HEAD's own run, with the experiments of HEAD that differ from it
    in their seed only (and are no trials)."""
    if name is None:
        base = Run(None, head())
    else:
        base = experiment(name)
        if base is None:
            raise PipelineError(f"no experiment {name!r} of this commit to compare with")
        if _pruned(base):
            raise PipelineError(f"--baseline {name} is a pruned trial: name a complete run")
    if not base.evaluation:
        raise PipelineError(f"{base.label} has no metrics/evaluation.json: run `dvc repro` and commit it first")
    own = configuration(base.params)
    seeds = [run for run in experiments().values() if run != base and not run.params.get("trial")
             and configuration(run.params) == own and run.evaluation]
    return [base, *seeds]


def pick(candidates, baseline, split=None):
    """The candidates' groups ranked on validation, the best compared with the baseline on `split`
    (default: validation)."""
    params = baseline[0].params
    task = task_of(params)
    validation = task.validation_splits[0]
    ranking, compared = ranking_metrics(params, task)
    key = f"{validation}_{ranking}"
    own = configuration(params)
    groups = ranked([group for group in group_runs(candidates) if group.params != own], validation, ranking)
    (baseline_group,) = group_runs(baseline)
    comparison = compare(task, groups[0], baseline_group, split or validation, compared,
                         ranked_by="" if ranking == compared else key) if groups else None
    return Pick(key, groups, baseline_group, comparison)


def ranking_metrics(params, task):
    """(ranked by, compared on): the metric the study optimised, as finetune/tune/search.py reads
    it, and the one the paired bootstrap scores from predictions: the task's main one for a loss."""
    # Only `best_model_metric` is read: checking all the params again would need the run's data
    # folder, or its GPU for fp16; they were checked when it ran.
    metric = best_model_metric(types.SimpleNamespace(best_model_metric=params.get("best_model_metric", "auto")), task)
    return metric, task.main_metric if metric == LOSS else metric


def table(chosen):
    """Markdown: the groups best first, the params that tell them apart, their seeds and scores."""
    groups = [*chosen.groups, chosen.baseline]
    keys = list(dict.fromkeys([chosen.key, *([chosen.comparison.key] if chosen.comparison else [])]))
    varying = sorted({name for group in groups for name in group.params
                      if len({json.dumps(other.params.get(name)) for other in groups}) > 1})
    lines = ["| " + " | ".join(["", *varying, "runs", "seeds", *keys]) + " |",
             "|---" * (len(varying) + 3 + len(keys)) + "|"]
    for group in groups:
        label = "baseline" if group is chosen.baseline else ", ".join(run.label for run in group.runs[:2]) + (
            ", ..." if len(group.runs) > 2 else "")
        cells = [label, *(_shown(group.params.get(name)) for name in varying), str(len(group.runs)),
                 ",".join(map(str, group.seeds))]
        for key in keys:
            mean, spread = group.summary(key)
            cells.append(f"{mean:.4f}" + ("" if math.isnan(spread) else f" ± {spread:.4f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _shown(value):
    """A param's value in the table: a float to 3 significant digits, as the search prints them
    (the full value is in `dvc exp show`)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def promote(chosen, seeds, jobs, branch=None, push=None, confirm_on="test"):
    """Re-run the winner and the baseline on `seeds` fresh seeds as plain runs, compare them on the
    `confirm_on` split, and if the winner is still better beyond noise, make its run of the first
    seed the committed, registered model. Returns (the confirmation's Pick, what confirmed it, the tag or None)."""
    _require_clean_work_tree()
    winner, baseline = chosen.groups[0], chosen.baseline
    base_params = baseline.runs[0].params
    task = task_of(base_params)
    split = confirmation_split(task, [*winner.runs, *baseline.runs], confirm_on)
    seed_list, sides = plan(chosen, seeds, Run(None, head()).params)
    runs = run_experiments({**sides[0], **sides[1]}, jobs, Path("tuning") / "logs")
    winners, bases = (_own_runs(label, group, [runs[name] for name in side], seed_list)
                      for label, group, side in (("the winner", winner, sides[0]), ("the baseline", baseline, sides[1])))
    final = pick(winners, bases, split)
    chosen_with = sorted({run.params["seed"] for run in winner.runs if not _confirmation(run)} or set(winner.seeds))
    confirmed = (f"confirmed on seeds {', '.join(map(str, seed_list))} (not {', '.join(map(str, chosen_with))}, "
                 f"the seed{'s' if len(chosen_with) > 1 else ''} the winner was chosen with) on {split}"
                 + (", the examples that chose it (biased upward)" if split in task.validation_splits
                    else ", examples that did not choose it"))
    print("\n".join(table(final)))
    print(f"pick: {confirmed}: {final.comparison.sentence()}")
    if not final.comparison.beyond_noise:
        print("pick: no winner beyond noise: nothing promoted")
        return final, confirmed, None
    chosen_run = winners[0]  # the first seed's, fixed before any ran: not the luckiest
    comparison = final.comparison
    evidence = {"configuration": configuration(chosen_run.params), "experiment": chosen_run.name,
                "baseline": baseline.runs[0].label, "changes": _changes(configuration(chosen_run.params), base_params),
                "metric": comparison.key, "difference": comparison.difference, "ci_low": comparison.low,
                "ci_high": comparison.high, "examples": comparison.examples, "seeds": seed_list,
                "confirmed_on": split, "sentence": f"{comparison.sentence()}; {confirmed}"}
    message = f"Promote {chosen_run.name} (finetune pick): {evidence['sentence']}"
    tag = register(chosen_run.name, evidence, message, branch, push)
    print(f"pick: promoted {chosen_run.name}: committed and tagged {tag}")
    return final, confirmed, tag


def confirmation_split(task, runs, confirm_on):
    """The split --promote compares on: test, which chose nothing, where every plain run scored its
    labels (a trial scores validation only); validation only when asked."""
    if confirm_on == "validation":
        return task.validation_splits[0]
    split = task.test_splits[0] if task.test_splits else "test"
    plain = [run for run in runs if not run.params.get("trial")]
    if not task.test_splits or not plain or not all(labelled(run.predictions(split)) for run in plain):
        raise PipelineError(f"pick --promote: {split} has no labels to confirm on: pass --confirm-on validation to "
                            "confirm over fresh seeds on the validation examples that chose the winner (biased upward)")
    return split


def plan(chosen, count, head_params):
    """(the confirmation seeds, [the winner's runs, the baseline's] as {name: `dvc exp run -S` changes}).

    The seeds: the first `count` positive ones that no run of either group has (but pick's own
    confirmations): on a CPU a seed already run repeats that very run, the one that won. The
    changes are relative to HEAD's params, which `dvc exp run` starts from, also for --baseline NAME."""
    winner, baseline = chosen.groups[0], chosen.baseline
    used = {run.params["seed"] for run in (*winner.runs, *baseline.runs) if not _confirmation(run)}
    seed_list = confirmation_seeds(count, used)
    sides = []
    for group in (winner, baseline):
        changes = _changes(group.params, head_params)
        prefix = f"pick-{_slug(changes) or 'baseline'}"
        sides.append({f"{prefix}-seed{seed}": {**changes, "seed": seed, "trial": ""} for seed in seed_list})
    return seed_list, sides


def _own_runs(label, group, runs, seeds):
    """`runs`, once each has run the group's params."""
    other = [run.name for run in runs if configuration(run.params) != group.params]
    if other:
        raise PipelineError(f"pick --promote: {label} has no run of its own params on seeds "
                            f"{', '.join(map(str, seeds))} ({other[0]} ran other params): nothing promoted")
    return runs


def _confirmation(run):
    return bool(run.name and CONFIRMATION.fullmatch(run.name)) and not run.params.get("trial")


def _pruned(run):
    return run.training.get("trial_state") == "pruned"


def _changes(wanted, base):
    """The params of `wanted` that differ from `base`, as `dvc exp run -S` takes them."""
    return {name: value for name, value in wanted.items() if base.get(name) != value}


def _slug(changes):
    text = re.sub(r"[^A-Za-z0-9_.-]+", "", "-".join(f"{name}{value}" for name, value in sorted(changes.items()))
                  .replace("_", ""))
    # Cut short, two params sets could share a name, and a run of one be reused for the other.
    return text if len(text) <= 60 else f"{text[:51]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _require_clean_work_tree():
    changed = uncommitted_changes()
    if changed:
        raise PipelineError(f"uncommitted changes ({changed[0]}, ...): commit or stash them before --promote")


def _resolve(rev):
    result = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"--rev {rev}: no such commit")
    return result.stdout.strip()
