"""The processes of a run, through Hugging Face accelerate.

``llara-kit train`` is one process; ``accelerate launch -m llara_kit train ...`` (GPUs) or
``torchrun --nproc-per-node N -m llara_kit train ...`` (CPUs, gloo) runs N (data parallel;
FSDP or DeepSpeed from accelerate's config, see docs/scaling.md).
A global micro-batch holds ``batch_size`` samples whatever N is: rank r takes the r-th of N
near-equal slices and weights its loss by its share, so the gradient the engine averages over
ranks is the one-process gradient of the whole micro-batch; a rank left without a sample (more
processes than samples) runs a stand-in whose loss counts 0. Rank 0 writes every file.
FSDP and DeepSpeed run on CUDA GPUs only (accelerate turns them into plain data parallel on
CPUs), FSDP as version 2 (``fully_shard``) from PyTorch 2.8.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    InitProcessGroupKwargs,
    gather_object,
    get_int_from_env,
)

from llara_kit.devices import pick_device
from llara_kit.errors import LlaraKitError

# The first PyTorch whose FSDP2 shards frozen bf16 weights and fp32 LoRA weights in one unit
# (pytorch/pytorch#154103: only trainable parameters need one dtype).
FSDP2_TORCH = (2, 8)


# Where launchers put this process's rank (torchrun, then the MPI implementations), as
# accelerate reads them.
RANK_VARIABLES = ["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"]


# How long a rank waits at a collective: rank 0's first-time work (converting a GGUF file,
# pre-training the encoder, cross-fitted training lists) runs while the others wait, and
# takes longer than NCCL's default 10 minutes on a large catalogue or model.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def launched_rank() -> int:
    """This process's rank as its launcher set it (0 when started alone), readable before
    any process group exists."""
    return get_int_from_env(RANK_VARIABLES, 0)


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch, mpirun) started several processes."""
    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"], 1) > 1


def command(processes: int = 1, log_dir: Path | None = None) -> list[str]:
    """The argv prefix that runs ``llara-kit`` in ``processes`` local processes: this Python
    with ``-m llara_kit``, under torchrun (gloo on CPUs, a free port) when more than one.
    torchrun keeps its workers' logs in ``log_dir``, else in a ``torchelastic_*`` folder of
    the temporary folder that nothing removes."""
    if processes == 1:
        return [sys.executable, "-m", "llara_kit"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = ["--log-dir", str(log_dir)] if log_dir is not None else []
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", str(port), *logs, "-m", "llara_kit"]


def process_device(name: str = "auto") -> torch.device:
    """This process's device: ``name`` (``--device``) in one process; in launched processes
    the one accelerate assigns each (``cpu`` makes them use gloo)."""
    if not launched():  # one process may use several devices in turn: no shared state
        return pick_device(name)
    return PartialState(cpu=pick_device(name).type == "cpu").device


def sharding_engine() -> str | None:
    """The sharding engine accelerate's launch asked for (``FSDP``, ``DeepSpeed``), if any."""
    for name, variable in (("FSDP", "ACCELERATE_USE_FSDP"),
                           ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED")):
        if os.environ.get(variable, "false").lower() == "true":
            return name
    return None


def check_engine(device: torch.device) -> None:
    """Refuse, in one sentence, a sharding engine this process could not run as asked."""
    engine = sharding_engine()
    if engine is None:
        return
    if device.type != "cuda":
        raise LlaraKitError(
            f"accelerate's config asks for {engine} but this run is on {device.type}, where "
            "accelerate would quietly fall back to plain data parallel; launch it on CUDA GPUs, "
            "or use torchrun (docs/scaling.md) for data parallel on CPUs.")
    if engine == "FSDP" and os.environ.get("FSDP_VERSION", "1") != "2":
        raise LlaraKitError(
            f"FSDP version {os.environ.get('FSDP_VERSION', '1')} keeps the frozen bf16 weights "
            "and the fp32 LoRA weights of a layer in one flat parameter, which it refuses; set "
            "fsdp_version: 2 in accelerate's config (examples/accelerate/fsdp-7b.yaml).")
    have = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    if engine == "FSDP" and have < FSDP2_TORCH:
        raise LlaraKitError(
            f"FSDP with frozen bf16 weights and fp32 LoRA weights needs PyTorch "
            f"{'.'.join(map(str, FSDP2_TORCH))} or newer, but this is {torch.__version__}; "
            "upgrade torch, or train with DDP or DeepSpeed.")


def make_accelerator(device: str, grad_accum: int = 1) -> tuple[Accelerator, torch.device]:
    """(accelerator, this process's device), for training; the trainer places the model.
    The accelerator accumulates ``grad_accum`` micro-batches per optimizer step, the same
    way for DDP, FSDP and DeepSpeed."""
    chosen = process_device(device)
    check_engine(chosen)
    # Text-only micro-batches leave the projector without a gradient: DDP must allow that.
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    patient = InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)
    accelerator = Accelerator(cpu=launched() and chosen.type == "cpu", device_placement=False,
                              kwargs_handlers=[unused, patient],
                              gradient_accumulation_steps=grad_accum)
    return accelerator, chosen


def allow_unused_gradients(engine: torch.nn.Module, model: torch.nn.Module) -> None:
    """Let ranks run different parts of the LLaRA ``model`` (the unprepared module inside
    ``engine``): a rank whose micro-batch slice holds no hybrid sample never runs the projector
    (nor the parts fed by it). DDP allows that (``find_unused_parameters``); FSDP2 would
    reduce-scatter fewer gradients on that rank than on the others, and DeepSpeed's ZeRO
    reduces gradient buckets (and, at stage 3, gathers a module's weights at each call) that
    would differ between ranks: mismatched collectives, a hang or an abort. FSDP2 is told to
    reduce-scatter unused parameters too; under DeepSpeed the model runs the projector path on
    every batch, on no tokens in a text-only one (``LlaraModel.always_project``)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(engine, FSDPModule):
        engine.set_reduce_scatter_unused_params(True)
    if _is_deepspeed(engine):
        model.always_project = True


def trainable_state(engine: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Sharded engines: the trainable weights, whole and on the CPU, gathered from every rank
    (every rank must call it; rank 0's result is the one to save), the frozen ones not
    gathered: under FSDP2 through torch's distributed checkpoint, under ZeRO-3 layer by layer
    (None on ranks but 0), under ZeRO-1/2 from the module below the engine (whose weights
    every rank holds whole and up to date after each step). None in one process and under
    DDP, where the model holds them whole."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(engine, FSDPModule):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        return get_model_state_dict(engine, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=True))
    if not _is_deepspeed(engine):
        return None
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=True)
    return {name: p.detach().cpu().clone() for name, p in engine.module.named_parameters()
            if p.requires_grad}


def _is_deepspeed(engine: torch.nn.Module) -> bool:
    """Whether ``engine`` is a DeepSpeed engine (DeepSpeed is imported only where one could
    be: once something imported it)."""
    if "deepspeed" not in sys.modules:
        return False
    from deepspeed import DeepSpeedEngine

    return isinstance(engine, DeepSpeedEngine)


def configure_deepspeed(accelerator: Accelerator, batch_size: int, grad_accum: int,
                        max_grad_norm: float, bf16: bool) -> None:
    """Give DeepSpeed the run's own settings before ``prepare`` (the trainer feeds it no
    data loader to read them from): one rank's micro-batch, accumulation, clipping and
    precision."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config.update(deepspeed_settings(batch_size, grad_accum, max_grad_norm,
                                     accelerator.num_processes, bf16))


def deepspeed_settings(batch_size: int, grad_accum: int, max_grad_norm: float,
                       world: int, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed config entries llara-kit owns, for ``world`` processes.

    Precision is the trainer's, as under DDP and FSDP: frozen weights in bf16 on CUDA,
    trainable ones in fp32, the forward under bf16 autocast when ``bf16``. DeepSpeed turns an
    autocast begun outside its engine off unless its ``torch_autocast`` section asks for it,
    and its own ``bf16`` mode would cast the whole module (trainable weights included) to
    bf16, so the one is set to the trainer's choice and the other off."""
    per_rank = largest_share(batch_size, world)
    return {"train_micro_batch_size_per_gpu": per_rank,
            "gradient_accumulation_steps": grad_accum,
            "train_batch_size": per_rank * grad_accum * world,
            "gradient_clipping": max_grad_norm,
            "torch_autocast": {"enabled": bf16, "dtype": "bfloat16"},
            "bf16": {"enabled": False}, "fp16": {"enabled": False}}


def largest_share(batch_size: int, world: int) -> int:
    """The most samples of a micro-batch one rank gets (at least 1: a stand-in)."""
    return -(-batch_size // world)


def shard(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s slice of ``indices`` (N near-equal contiguous slices, in order)."""
    return np.array_split(indices, world)[rank]


def my_share(n: int, rank: int, world: int) -> tuple[np.ndarray, bool]:
    """(this rank's positions in a micro-batch of ``n`` samples, whether they are a stand-in).
    A rank left without a sample takes sample 0 as a stand-in whose loss counts 0, so that
    every rank joins each gradient exchange and the plan does not depend on ``world``."""
    mine = shard(np.arange(n), rank, world)
    return (mine, False) if len(mine) else (np.zeros(1, dtype=np.int64), True)


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every rank's rows, concatenated in rank order (the rows themselves in one process)."""
    return np.concatenate(gather_object([local])) if launched() else local


def process_share() -> tuple[int, int]:
    """(rank, number of processes) of this run."""
    if not launched():
        return 0, 1
    state = PartialState(timeout=COLLECTIVE_TIMEOUT)
    return state.process_index, state.num_processes


def main_writes(write: Callable[[], None]) -> None:
    """Run ``write`` on rank 0 only; every rank returns once it is done."""
    if not launched():
        write()
        return
    state = PartialState(timeout=COLLECTIVE_TIMEOUT)
    if state.is_main_process:
        write()
    state.wait_for_everyone()
