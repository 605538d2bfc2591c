"""The processes of a run, through Hugging Face accelerate.

``llara-kit train`` is one process; ``accelerate launch -m llara_kit train ...`` (GPUs) or
``torchrun --nproc-per-node N -m llara_kit train ...`` (CPUs, gloo) runs N (data parallel;
FSDP or DeepSpeed from accelerate's config, see docs/scaling.md).
A global micro-batch holds ``batch_size`` samples whatever N is: rank r takes the r-th of N
near-equal slices and weights its loss by its share, so the gradient the engine averages over
ranks is the one-process gradient of the whole micro-batch. Rank 0 writes every file.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, gather_object, get_int_from_env

from llara_kit.devices import pick_device


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch, mpirun) started several processes."""
    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"], 1) > 1


def command(processes: int = 1) -> list[str]:
    """The argv prefix that runs ``llara-kit`` in ``processes`` local processes: this Python
    with ``-m llara_kit``, under torchrun (gloo on CPUs, a free port) when more than one."""
    if processes == 1:
        return [sys.executable, "-m", "llara_kit"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "llara_kit"]


def process_device(name: str = "auto") -> torch.device:
    """This process's device: ``name`` (``--device``) in one process; in launched processes
    the one accelerate assigns each (``cpu`` makes them use gloo)."""
    if not launched():  # one process may use several devices in turn: no shared state
        return pick_device(name)
    return PartialState(cpu=pick_device(name).type == "cpu").device


def make_accelerator(device: str) -> tuple[Accelerator, torch.device]:
    """(accelerator, this process's device), for training; the trainer places the model."""
    chosen = process_device(device)
    # Text-only micro-batches leave the projector without a gradient: DDP must allow that.
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(cpu=launched() and chosen.type == "cpu", device_placement=False,
                              kwargs_handlers=[unused])
    return accelerator, chosen


def shard(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s slice of ``indices`` (N near-equal contiguous slices, in order)."""
    return np.array_split(indices, world)[rank]


def fold_small(batches: list[np.ndarray], world: int) -> list[np.ndarray]:
    """Merge any batch too small to give every rank a sample into the one before it."""
    out: list[np.ndarray] = []
    for batch in batches:
        if len(batch) < world and out:
            out[-1] = np.concatenate([out[-1], batch])
        else:
            out.append(batch)
    return out


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every rank's rows, concatenated in rank order (the rows themselves in one process)."""
    return np.concatenate(gather_object([local])) if launched() else local


def process_share() -> tuple[int, int]:
    """(rank, number of processes) of this run."""
    if not launched():
        return 0, 1
    state = PartialState()
    return state.process_index, state.num_processes


def main_writes(write: Callable[[], None]) -> None:
    """Run ``write`` on rank 0 only; every rank returns once it is done."""
    if not launched():
        write()
        return
    state = PartialState()
    if state.is_main_process:
        write()
    state.wait_for_everyone()
