"""`finetune pick`: rank runs with their seed noise in view, and promote a winner beyond noise.

The runs (a study's complete trials, named experiments, or every experiment of a commit) are
grouped by their params but `seed` and `trial`, ranked by the task's main validation metric
averaged over seeds, and the best group is compared with the baseline (the commit's own run and
its seed variants, or a run you name) by a paired bootstrap on the same validation examples
(finetune/tune/compare.py). "No winner beyond noise" when the interval of the difference holds 0.

--promote re-runs the winner and the baseline as plain runs (no `trial`) up to N seeds each,
compares again, and only if the winner still wins beyond noise: applies its run of the
baseline's seed (`dvc exp apply`, on a new branch with --branch), writes the evidence to
selection.json (the model card shows it), commits, and registers the model artifact version as
a Git tag in GTO's format, its message the evidence.
"""

import dataclasses
import json
import math
import re
import subprocess
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.params import configuration
from finetune.core.paths import SELECTION_FILE
from finetune.reporting.model_card import ARTIFACT_NAME as ARTIFACT
from finetune.tune.compare import compare, group_runs, ranked, seeds_for, task_of
from finetune.tune.experiments import Run, experiment, experiments, head, run_experiments, uncommitted_changes

REPORT = Path("tuning") / "pick.md"


@dataclasses.dataclass(frozen=True)
class Pick:
    key: str
    groups: list  # ranked, best first
    baseline: object
    comparison: object | None  # best against baseline


def candidate_runs(study=None, names=(), rev=None):
    """The runs to rank: a study's complete trials (and plain runs of their params), named
    experiments, or every finished experiment of `rev` (default: HEAD)."""
    baseline_rev = head() if rev is None else _resolve(rev)
    recorded = experiments(baseline_rev)
    if names:
        missing = [name for name in names if name not in recorded]
        if missing:
            raise PipelineError(f"no experiment {missing[0]!r} of commit {baseline_rev[:7]}")
        return [recorded[name] for name in names]
    runs = [run for run in recorded.values() if run.training.get("trial_state") != "pruned" and run.evaluation]
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
    if not base.evaluation:
        raise PipelineError(f"{base.label} has no metrics/evaluation.json: run `dvc repro` and commit it first")
    own = configuration(base.params)
    seeds = [run for run in experiments().values() if run != base and not run.params.get("trial")
             and configuration(run.params) == own and run.evaluation]
    return [base, *seeds]


def pick(candidates, baseline):
    params = baseline[0].params
    task = task_of(params)
    split, metric = task.validation_splits[0], task.main_metric
    key = f"{split}_{metric}"
    own = configuration(params)
    groups = ranked([group for group in group_runs(candidates) if group.params != own], split, metric)
    (baseline_group,) = group_runs(baseline)
    comparison = compare(task, groups[0], baseline_group, split, metric) if groups else None
    return Pick(key, groups, baseline_group, comparison)


def table(chosen):
    """Markdown: the groups best first, the params that tell them apart, their seeds and scores."""
    groups = [*chosen.groups, chosen.baseline]
    varying = sorted({name for group in groups for name in group.params
                      if len({json.dumps(other.params.get(name)) for other in groups}) > 1})
    lines = ["| " + " | ".join(["", *varying, "runs", "seeds", chosen.key]) + " |", "|---" * (len(varying) + 4) + "|"]
    for group in groups:
        mean, spread = group.summary(chosen.key)
        label = "baseline" if group is chosen.baseline else ", ".join(run.label for run in group.runs[:2]) + (
            ", ..." if len(group.runs) > 2 else "")
        cells = [label, *(_shown(group.params.get(name)) for name in varying), str(len(group.runs)),
                 ",".join(map(str, group.seeds)), f"{mean:.4f}" + ("" if math.isnan(spread) else f" ± {spread:.4f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _shown(value):
    """A param's value in the table: a float to 3 significant digits, as the search prints them
    (the full value is in `dvc exp show`)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def promote(chosen, seeds, jobs, branch=None, push=None):
    """Re-run the winner and the baseline up to `seeds` seeds as plain runs, compare again, and if
    the winner is still better beyond noise, make it the committed, registered model."""
    _require_clean_work_tree()
    winner, baseline = chosen.groups[0], chosen.baseline
    base_params = baseline.runs[0].params
    seed_list = seeds_for(seeds, base_params["seed"])
    slug = _slug(winner.params, base_params)
    planned = {}
    for prefix, group in (("pick-baseline", baseline), (f"pick-{slug}", winner)):
        wanted = configuration(group.params if group is winner else base_params)
        for seed in seed_list:
            if not any(run.params["seed"] == seed and not run.params.get("trial") for run in group.runs):
                planned[f"{prefix}-seed{seed}"] = {**_changes(wanted, base_params), "seed": seed, "trial": ""}
    runs = run_experiments(planned, jobs, Path("tuning") / "logs")
    plain = [run for run in [*winner.runs, *runs.values()] if not run.params.get("trial")]
    winners = [run for run in plain if configuration(run.params) == winner.params and run.params["seed"] in seed_list]
    bases = [run for run in [*baseline.runs, *runs.values()]
             if configuration(run.params) == baseline.params and run.params["seed"] in seed_list]
    final = pick(winners, bases)
    print("\n".join(table(final)))
    print(f"pick: over {len(seed_list)} seeds: {final.comparison.sentence()}")
    if not final.comparison.beyond_noise:
        print("pick: no winner beyond noise: nothing promoted")
        return final, None
    chosen_run = next(run for run in winners if run.params["seed"] == base_params["seed"])
    return final, _register(final, chosen_run, base_params, branch, push)


def _register(final, chosen_run, base_params, branch, push):
    if branch:
        _run(["git", "checkout", "-q", "-b", branch])
    _run(["dvc", "exp", "apply", chosen_run.name])
    evidence = {"configuration": configuration(chosen_run.params), "experiment": chosen_run.name,
                "baseline": final.baseline.runs[0].label, "changes": _changes(configuration(chosen_run.params), base_params),
                "metric": final.comparison.key, "difference": final.comparison.difference,
                "ci_low": final.comparison.low, "ci_high": final.comparison.high,
                "examples": final.comparison.examples, "seeds": sorted(run.params["seed"] for run in final.groups[0].runs),
                "sentence": final.comparison.sentence()}
    SELECTION_FILE.write_text(json.dumps(evidence, indent=2, sort_keys=True) + "\n")
    _run(["dvc", "repro"])  # publish: the model card now carries the evidence
    _run(["git", "add", "params.yaml", "dvc.lock", "metrics", str(SELECTION_FILE)])
    message = f"Promote {chosen_run.name} (finetune pick): {final.comparison.sentence()}"
    _run(["git", "commit", "-q", "-m", message])
    tag = f"{ARTIFACT}@{_next_version()}"
    _run(["git", "tag", "-a", tag, "-m", message])
    if push:
        _run(["git", "push", "-q", push, "HEAD", tag])
        _run(["dvc", "push"])
    print(f"pick: promoted {chosen_run.name}: committed and tagged {tag}")
    return tag


def _changes(wanted, base):
    """The params of `wanted` that differ from `base`, as `dvc exp run -S` takes them."""
    return {name: value for name, value in wanted.items() if base.get(name) != value}


def _slug(params, base):
    changed = _changes(configuration(params), base)
    text = "-".join(f"{name}{value}" for name, value in sorted(changed.items())) or "same"
    return re.sub(r"[^A-Za-z0-9_.-]+", "", text.replace("_", ""))[:60]


def _next_version():
    tags = _run(["git", "tag", "--list", f"{ARTIFACT}@v*"]).split()
    versions = [tuple(map(int, match.groups())) for tag in tags
                if (match := re.fullmatch(rf"{re.escape(ARTIFACT)}@v(\d+)\.(\d+)\.(\d+)", tag))]
    if not versions:
        return "v1.0.0"
    major, minor, _ = max(versions)
    return f"v{major}.{minor + 1}.0"


def _require_clean_work_tree():
    changed = uncommitted_changes()
    if changed:
        raise PipelineError(f"uncommitted changes ({changed[0]}, ...): commit or stash them before --promote")


def _resolve(rev):
    result = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"--rev {rev}: no such commit")
    return result.stdout.strip()


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["failed"]
        raise PipelineError(f"{' '.join(command)}: {lines[-1]}")
    return result.stdout

