"""The machine while the train stage runs, beside the curves: DVCLive's system monitor (CPU, memory,
disk, and a GPU's use and memory where there is one) samples it in a thread, and writes a point
about every second (the mean of 10 samples 0.1 s apart) to metrics/machine/plots/metrics/system/,
which `dvc plots show` draws (dvc.yaml's `plots:`); at the end, metrics/machine.json condenses them
(peaks and means), a metric of dvc.yaml that `dvc exp show` and `dvc metrics diff` show.

These are measurements of a machine, not results of the params, so they are no stage's output:
two runs of the same params give bit-identical outputs (tests/test_declared_inputs.py), and these
figures differ. A DVCLive instance of their own keeps them out of the train stage's live summary.
"""

import csv
import resource
import statistics

from finetune.core.outputs import write_json
from finetune.core.paths import MACHINE_DIR, MACHINE_FILE

SAMPLES_DIR = MACHINE_DIR / "plots" / "metrics" / "system"
INTERVAL_SECONDS, SAMPLES = 0.1, 10
# {key of machine.json: (DVCLive's metric, peak or mean)}
SUMMARISED = {"peak_ram_used_gb": ("ram/usage (GB)", max), "mean_cpu_percent": ("cpu/usage (%)", statistics.fmean),
              "peak_vram_used_gb": ("vram/usage (GB)", max), "mean_gpu_percent": ("gpu/usage (%)", statistics.fmean)}


class MachineMonitor:
    """DVCLive's system monitor on a Live of its own: `step(n)` as training goes, `end(processes)`."""

    def __init__(self, live_class, resuming):
        _without_unusable_nvml()
        self.live = live_class(dir=str(MACHINE_DIR), resume=resuming, dvcyaml=None, save_dvc_exp=False, report=None)
        self.live.monitor_system(interval=INTERVAL_SECONDS, num_samples=SAMPLES,
                                 directories_to_monitor={"project": "."})

    def step(self, step):
        self.live.step = step  # the samples' x in `dvc plots show`: the training step they fell in

    def end(self, processes):
        self.live.end()
        write_json(MACHINE_FILE, {"processes": processes, **summary()})


def _without_unusable_nvml():
    """DVCLive 3.49's monitor (the module dvclive.monitor_system) reads the GPUs first in every sample
    wherever pynvml imports, and nvidia-ml-py, which provides it, is DVCLive's own dependency. On a
    machine without NVIDIA's driver, nvmlInit raises NVMLError_LibraryNotFound, which the monitor
    catches for the whole sample: CPU, memory and disk were then never recorded (measured on this
    project's CPU machines: no file at all). Where NVML cannot start, the module's GPU_AVAILABLE flag
    is turned off, as if pynvml were absent. tests/test_framework_internals.py fails once DVCLive
    no longer needs it."""
    import dvclive.monitor_system as dvclive_monitor

    if not dvclive_monitor.GPU_AVAILABLE:
        return
    try:
        dvclive_monitor.nvmlInit()
        dvclive_monitor.nvmlShutdown()
    except dvclive_monitor.NVMLError:
        dvclive_monitor.GPU_AVAILABLE = False


def summary():
    """The main process's peak resident memory, and of the whole machine the peak of memory used,
    the mean CPU use, and where there is a GPU its peak memory and mean use; rounded."""
    process_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"peak_process_memory_gb": round(process_peak_kb / 2**20, 3)}
    for key, (metric, condense) in SUMMARISED.items():
        path = SAMPLES_DIR / f"{metric}.tsv"
        if not path.is_file():
            continue
        with open(path, newline="") as samples:
            values = [float(row[metric.rsplit("/", 1)[1]]) for row in csv.DictReader(samples, delimiter="\t")]
        if values:
            figures[key] = round(condense(values), 3 if key.endswith("_gb") else 1)
    return figures
