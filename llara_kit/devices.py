"""Where tensors live: the ``--device`` setting (auto, cpu, cuda, cuda:N) and bf16 support."""

from __future__ import annotations

import os

import torch

from llara_kit.config import DEVICE_HELP
from llara_kit.errors import LlaraKitError


def pick_device(name: str = "auto") -> torch.device:
    """The device ``name`` means on this machine; one sentence if it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LlaraKitError(f"device={name!r} is not a device; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LlaraKitError(f"device={name!r} but no CUDA GPU is visible; use cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LlaraKitError(f"device={name!r} but only {torch.cuda.device_count()} GPU(s) "
                                "are visible; use cuda:0 or auto.")
    elif device.type != "cpu":
        raise LlaraKitError(f"device={name!r} is not supported; use {DEVICE_HELP}")
    return device


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def scoring_autocast(model: torch.nn.Module, precision: str) -> torch.autocast:
    """bf16 autocast for scoring with ``model`` on a CUDA GPU that has bf16, unless the run's
    ``precision`` is fp32 (as training autocasts); off on CPUs, whose fp32 scores stay exact."""
    device = next(model.parameters()).device
    on = device.type == "cuda" and precision != "fp32" and bf16_supported(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def free_memory(device: torch.device) -> int:
    """Bytes free for this process on ``device``: the GPU's free memory, or the host's
    available memory (MemAvailable) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
