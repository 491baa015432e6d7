"""Safe pickles: a restricted unpickler for numpy arrays and plain containers, atomic writes.

Pickles from other people (cryoDRGN poses, CTF, latents, indices) can run arbitrary code when
loaded with plain `pickle.load`. `load_pickle` only admits the few globals numpy needs to
rebuild arrays, dtypes and scalars (numpy 1 and numpy 2 spellings); anything else is refused.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import os
import pickle
import re
import warnings

import numpy as np
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.atomic import atomic_open


def _numpy_attr(modules: tuple[str, ...], name: str):
    """The first numpy object `module.name` that exists (numpy moved `core` to `_core` in 2.0)."""
    import importlib
    import warnings

    for mod in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name}")


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")

# (module, name) -> object, for every spelling numpy 1.x and 2.x pickles use.
_ALLOWED: dict[tuple[str, str], object] = {}
for _mod in _MULTIARRAY:
    _ALLOWED[(_mod, "_reconstruct")] = _numpy_attr(_MULTIARRAY, "_reconstruct")
    _ALLOWED[(_mod, "scalar")] = _numpy_attr(_MULTIARRAY, "scalar")
for _mod in _NUMERIC:  # protocol 5 pickles of contiguous arrays
    _ALLOWED[(_mod, "_frombuffer")] = _numpy_attr(_NUMERIC, "_frombuffer")
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = codecs.encode  # bytes in protocol 2 pickles
for _name in ("set", "frozenset", "complex", "slice"):
    _ALLOWED[("builtins", _name)] = getattr(builtins, _name)
_ALLOWED[("collections", "OrderedDict")] = collections.OrderedDict


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # Python 2 names (protocol <= 2), mapped as the standard Unpickler does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = _ALLOWED.get((module, name))
        if obj is None and module == "numpy.dtypes" and name.endswith("DType"):
            obj = getattr(np.dtypes, name, None)  # numpy 2 dtype classes (harmless types)
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle: it references {module}.{name}, which could run code "
                "(only numpy arrays, dtypes, scalars and plain containers are allowed)")
        return obj


def _load_all(path: str | os.PathLike, first_only: bool) -> list:
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise InputFileError(path, f"cannot read: {e.strerror or e}") from None
    objs = []
    with f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size and not (first_only and objs):
            try:
                objs.append(_RestrictedUnpickler(f).load())
            except pickle.UnpicklingError as e:
                msg = str(e)
                if not msg.startswith("refusing"):
                    msg = f"not a valid pickle ({msg})"
                raise InputFileError(path, msg) from None
            except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
                raise InputFileError(path, f"not a valid pickle or truncated ({e!r})") from None
    if not objs:
        raise InputFileError(path, "empty file, no pickle in it")
    return objs


def load_pickle(path: str | os.PathLike):
    """The first pickle in `path`, through the restricted unpickler."""
    return _load_all(path, first_only=True)[0]


def load_pickles(path: str | os.PathLike) -> list:
    """All consecutive pickles in `path` (cryoDRGN z files hold mu, then logvar)."""
    return _load_all(path, first_only=False)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A torch checkpoint (cryoDRGN or cryoscape) with `weights_only=True` onto the CPU, the
    numpy globals of cryoDRGN's checkpoints (e.g. `search_pose` arrays) allow-listed."""
    import torch

    allowed = [(obj, f"{mod}.{name}") for (mod, name), obj in _ALLOWED.items()
               if mod.startswith("numpy")]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise InputFileError(path, _refusal(str(e), path)) from None


def _refusal(torch_message: str, path) -> str:
    """What torch's safe loader refused and why, in one line (never its advice to load the
    file unsafely)."""
    m = re.search(r"(?:nsupported global: |unsupported )GLOBAL (\S+)", torch_message)
    if m:
        return (f"refused: the checkpoint references {m.group(1)}, which is not a tensor, "
                "array or plain container; loading it could run code")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # a torch.save (zip) file, damaged or of another kind
        lines = [ln.strip() for ln in torch_message.splitlines()
                 if ln.strip() and "weights_only" not in ln]
        first = re.split(r"\.\s", (lines or ["unknown error"])[0])[0][:200]
        return f"not a readable torch checkpoint, truncated or damaged ({first})"
    if head[:1] == pickle.PROTO:
        return ("refused: a plain pickle, not a torch checkpoint (torch.save); plain pickles "
                "can run code, so weights are read only from torch checkpoints")
    return "not a torch checkpoint (neither a torch.save file nor a pickle)"


def save_pickle(path: str | os.PathLike, obj, *more) -> None:
    """Write `obj` (and any further objects, one pickle after another) atomically."""
    with atomic_open(path, "wb") as f:
        for o in (obj, *more):
            pickle.dump(o, f, protocol=4)
