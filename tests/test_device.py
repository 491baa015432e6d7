"""Device selection, the mixed-precision policy and decode chunk sizes (core/device): the GPU
logic checked on any machine, the GPUs' counts and memory given."""
import pytest
import torch
from cryoscape.core import device as dev
from cryoscape.core.errors import CryoscapeError


def test_select_device_defaults_to_a_gpu_when_there_is_one():
    assert dev.select_device(None, cuda_count=0) == torch.device("cpu")
    assert dev.select_device("", cuda_count=2) == torch.device("cuda")
    assert dev.select_device("cpu", cuda_count=2) == torch.device("cpu")
    assert dev.select_device("cuda:1", cuda_count=2) == torch.device("cuda", 1)


@pytest.mark.parametrize("name, count, message", [
    ("cuda", 0, "no CUDA GPU here"), ("cuda:0", 0, "use --device cpu"),
    ("cuda:2", 2, "there are 2 GPUs here (cuda:0 .. cuda:1)"),
    ("cuda:1", 1, "there is 1 GPU here (cuda:0 .. cuda:0)"), ("gpu0", 1, "is not a device")])
def test_select_device_says_why_a_gpu_cannot_be_used(name, count, message):
    with pytest.raises(CryoscapeError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        dev.select_device(name, cuda_count=count)


def test_select_device_on_this_machine_agrees_with_torch():
    if torch.cuda.is_available():
        assert dev.select_device().type == "cuda"
    else:
        assert dev.select_device() == torch.device("cpu")
        with pytest.raises(CryoscapeError, match="no CUDA GPU"):
            dev.select_device("cuda")


@pytest.mark.parametrize("device, amp, bf16, dtype, scaler", [
    ("cuda", True, True, torch.bfloat16, False),     # Ampere and later
    ("cuda", True, False, torch.float16, True),      # V100, T4: fp16 with a scaler
    ("cuda", False, True, None, False),
    ("cpu", True, True, torch.bfloat16, False),      # AVX512-BF16 / AMX
    ("cpu", True, False, None, False),               # emulated bf16 is slower: float32
    ("cpu", False, True, None, False)])
def test_amp_policy(device, amp, bf16, dtype, scaler):
    assert dev.amp_dtype(device, amp, bf16) == dtype
    assert dev.needs_scaler(dev.amp_dtype(device, amp, bf16)) is scaler


def test_decode_chunk_from_free_memory():
    gib = 2 ** 30
    # CPU: a cache-sized chunk (2^19 floats) whatever the memory, unless little is free
    assert dev.decode_chunk("cpu", 64 * gib, 1024) == 2 ** 19 // 1024
    assert dev.decode_chunk("cpu", 64 * gib, 256, maps=4) == 2 ** 19 // 1024
    assert dev.decode_chunk("cpu", 8 * 2 ** 20, 128) == 1024   # 8 MiB free: 2^17 floats
    # GPU: a quarter of the free memory for 4 live float32 arrays per point and unit
    assert dev.decode_chunk("cuda", 80 * gib, 1024) == 80 * gib // 4 // 16 // 1024
    assert dev.decode_chunk("cuda", 8 * gib, 1024, maps=8) == 8 * gib // 4 // 16 // 8192
    # a 128^3 map's lower half in one call on an 80 GB GPU at width 1024
    assert dev.decode_chunk("cuda", 80 * gib, 1024) >= 128 ** 3 // 2
    assert dev.decode_chunk("cuda", 1, 1024) == dev.MIN_CHUNK     # never below the floor


def test_free_memory_is_positive_on_cpu():
    assert dev.free_memory(torch.device("cpu")) > 2 ** 20
