"""The processes train and evaluate run on: the `processes` param, and starting them.

A stage run as `python -m stages.train` (its one-line command in dvc.yaml) with more than one
process to run starts itself again under Accelerate's launcher (`accelerate launch --multi_gpu`,
torchrun underneath: one process per GPU, or gloo processes on a CPU), waits for it and exits with
its status, so `dvc repro` and `dvc exp run` record the run as any other. Each launched process
reads params.yaml itself (not through dvc.api, which many processes at once trip over: iterative/dvc
#9723, #10050); only the main one writes outputs and reports.

Several machines: the same param on each, and where each stands from the environment:
FINETUNE_MACHINES (how many), FINETUNE_MACHINE_RANK (this one's, 0 writes the outputs) and
FINETUNE_MAIN_ADDRESS (host:port of rank 0's rendezvous). docs/many-gpus.md shows it.
"""

import os
import socket
import subprocess
import sys

from finetune.core.errors import PipelineError
from finetune.core.params import AUTO

MACHINES, MACHINE_RANK, MAIN_ADDRESS = "FINETUNE_MACHINES", "FINETUNE_MACHINE_RANK", "FINETUNE_MAIN_ADDRESS"
# Set in the launched processes, which run the stage rather than launch it again.
LAUNCHED = "FINETUNE_LAUNCHED"


def resolved_processes(processes):
    """The `processes` param as this machine runs it: auto is one per visible GPU, else 1."""
    if processes != AUTO:
        return processes
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def cpu_threads():
    """The threads this process may use: OMP_NUM_THREADS where set (a search trial's share of the
    cores, a scheduler's allocation), else the CPUs it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else len(os.sched_getaffinity(0))


def machines():
    """(machines, this machine's rank, rank 0's host, its port) from the environment; (1, 0, None, None) alone."""
    count = _environment_int(MACHINES, 1)
    if count == 1:
        return 1, 0, None, None
    rank = _environment_int(MACHINE_RANK, None)
    if rank is None or not 0 <= rank < count:
        raise PipelineError(f"{MACHINE_RANK} must be set to this machine's rank in [0, {count}) when {MACHINES}={count}")
    host, _, port = os.environ.get(MAIN_ADDRESS, "").rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"{MAIN_ADDRESS} must be host:port of rank 0's machine when {MACHINES}={count}, "
                            f"got {os.environ.get(MAIN_ADDRESS, '')!r}")
    return count, rank, host, int(port)


def launch(stage_module, processes):
    """In the first process of a stage: its exit status after running it on `processes` processes
    of this machine (and on every machine of FINETUNE_MACHINES); None where this process is to run
    the stage itself (one process in all, or already launched)."""
    if os.environ.get(LAUNCHED) or "LOCAL_RANK" in os.environ:  # launched here, or by hand
        return None
    per_machine = resolved_processes(processes)
    count, rank, host, port = machines()
    if per_machine * count == 1:
        return None
    # Precision and compilation are the params' (Trainer sets them), not an `accelerate config`'s.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--num_processes", str(per_machine * count), "--num_machines", str(count)]
    if count > 1:
        command += ["--machine_rank", str(rank), "--main_process_ip", host, "--main_process_port", str(port)]
    else:  # a free port: two runs at once on one machine (search trials) must not share a rendezvous
        command += ["--main_process_port", str(_free_port())]
    # On a CPU each process gets its share of the cores; torchrun would give each one thread.
    threads = max(1, cpu_threads() // per_machine)
    environment = {**os.environ, LAUNCHED: "1", "OMP_NUM_THREADS": str(threads)}
    stage = stage_module.rsplit(".", 1)[-1]
    print(f"{stage}: {per_machine} processes on this machine"
          + (f" (machine {rank} of {count})" if count > 1 else "") + f", {threads} threads each", flush=True)
    return subprocess.run([*command, "-m", stage_module], env=environment).returncode


def trial_environment(device, jobs):
    """A trial's own device: its GPU (never two trials on one), or on a CPU its share of the cores, so
    that trials at once do not oversubscribe them (two 2-thread trainings on 2 cores took about twice
    as long as one after the other). The train stage's log names what it was given."""
    if device is not None:
        return {"CUDA_VISIBLE_DEVICES": str(device)}
    return {"OMP_NUM_THREADS": str(max(1, cpu_threads() // jobs))}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment_int(name, default):
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit():
        raise PipelineError(f"{name} must be a whole number, got {value!r}")
    return int(value)
