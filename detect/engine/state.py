"""The resume file `resume.safetensors`: tensors in safetensors, scalars and RNG states as JSON
in its metadata. Nothing is ever unpickled."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from detect.errors import DetectError
from detect.files import atomic_write_bytes

RESUME_FILE = "resume.safetensors"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as JSON-able values (torch states as base64 bytes)."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], _b64(np_state[1].tobytes()), *np_state[2:]],
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
        "cuda": [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.frombuffer(base64.b64decode(keys), dtype=np.uint32).copy()
    np.random.set_state((name, keys, pos, has_gauss, cached))
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(raw))
    if state.get("cuda") and torch.cuda.is_available():
        cuda = [
            torch.from_numpy(np.frombuffer(base64.b64decode(s), np.uint8).copy())
            for s in state["cuda"]
        ]
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_resume_state(path: Path, tensors: dict[str, torch.Tensor], scalars: dict) -> None:
    """Write `tensors` and the JSON `scalars` (plus the RNG states) atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    state = {**scalars, "rng": rng_state()}
    atomic_write_bytes(path, save(tensors, metadata={"state": json.dumps(state)}))


def load_resume_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(scalars, tensors) of a resume file; DetectError naming it if it is missing or bad."""
    if not path.is_file():
        raise DetectError(f"{path}: no resume state here (is this a run folder of detect train?)")
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["state"])
            # copies, not views of the file's memory map: a map kept alive (by the optimizer's
            # state) would hold the disk space of this file after the next checkpoint replaces it
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise DetectError(f"{path}: unreadable resume state ({str(e).splitlines()[0]})") from None
    return state, tensors


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `tensors` under `prefix` ("model." ...), with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as ("optim.<param>.<key>" tensors, JSON scalars)."""
    osd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": osd["param_groups"], "optim_scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict, state: dict) -> None:
    """Inverse of `optimizer_state`."""
    opt_state: dict[int, dict] = {}
    for k, v in prefixed(tensors, "optim.").items():
        pid, key = k.split(".", 1)
        opt_state.setdefault(int(pid), {})[key] = v
    for pid, d in state["optim_scalars"].items():
        opt_state.setdefault(int(pid), {}).update(d)
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
