"""Where and in what precision torch runs: device selection, the mixed-precision policy and the
size of decode chunks, each a function of what the machine offers (passed in, so the GPU
logic is tested on any machine).
"""
from __future__ import annotations

import os

import torch
from cryoscape.core.errors import CryoscapeError

# floats per chunk of MLP activations on CPU: a chunk stays in cache (2 MiB in float32; 2x
# faster than 64 MiB chunks for 128- and 256-wide decoders); a GPU wants big chunks
CPU_CHUNK_FLOATS = 2 ** 19
# share of the free memory one decode chunk's activations may take: the rest is left to the
# maps being assembled, the inverse transform and whatever else shares the device
MEMORY_SHARE = 0.25
# float32 activation arrays alive per point and hidden unit in an MLP chunk (input, output,
# the activation function's result and the positional encoding's, with headroom)
LIVE_ACTIVATIONS = 4
MIN_CHUNK = 256


def select_device(name: str | None = None, *, cuda_count: int | None = None) -> torch.device:
    """The torch device `name` names ('cpu', 'cuda', 'cuda:1', ...; None or '': the first GPU
    if there is one, else the CPU). CUDA asked for where there is none, or a GPU index out of
    range, is a CryoscapeError saying so. `cuda_count`: the GPUs visible (default: torch's)."""
    count = torch.cuda.device_count() if cuda_count is None else int(cuda_count)
    if not name:
        return torch.device("cuda" if count else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CryoscapeError(f"--device {name!r} is not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if count == 0:
            why = ("this torch is built without CUDA" if torch.version.cuda is None else
                   f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: check "
                   "the driver and CUDA_VISIBLE_DEVICES")
            raise CryoscapeError(f"--device {name}: no CUDA GPU here ({why}); use --device cpu")
        if device.index is not None and device.index >= count:
            raise CryoscapeError(f"--device {name}: there {'is' if count == 1 else 'are'} "
                                 f"{count} GPU{'s' * (count > 1)} here (cuda:0 .. "
                                 f"cuda:{count - 1})")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices natively: CUDA GPUs from Ampere on, CPUs with
    AVX512-BF16 or AMX (2-2.5x their float32 rate); elsewhere bf16 would be emulated, slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported()
                                     or torch.cpu._is_amx_tile_supported())


def amp_dtype(device_type: str, amp: bool, bf16: bool) -> torch.dtype | None:
    """The autocast dtype of training (None: float32 throughout). With `amp`: bf16 where the
    device has it natively (`bf16`); on older GPUs fp16, whose gradients need a GradScaler
    (`needs_scaler`); on other CPUs float32 (emulated bf16 is slower, CPUs have no fp16)."""
    if not amp:
        return None
    if bf16:
        return torch.bfloat16
    return torch.float16 if device_type == "cuda" else None


def needs_scaler(dtype: torch.dtype | None) -> bool:
    """fp16's narrow range underflows small gradients: they are scaled up, then checked."""
    return dtype == torch.float16


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on `device`: the GPU's free memory (torch.cuda.mem_get_info),
    or the memory the operating system reports available (Linux MemAvailable, else the
    physical memory)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kib * 1024
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decode_chunk(device_type: str, free_bytes: int, width: int, maps: int = 1) -> int:
    """Lattice points per decoder call when `maps` latents are decoded at once through an MLP
    `width` wide: a cache-sized chunk on CPU (smaller where little memory is free), on a GPU
    as many points as MEMORY_SHARE of its free memory holds."""
    floats = MEMORY_SHARE * free_bytes / (4 * LIVE_ACTIVATIONS)
    if device_type == "cpu":
        floats = min(floats, CPU_CHUNK_FLOATS)
    return max(MIN_CHUNK, int(floats) // (max(1, maps) * max(1, width)))
