"""Files that survive a crash: atomic writes, checksummed safetensors, and the typed train state.

Every file is written to a temporary name, flushed to disk and renamed into place, so a crash
leaves either the old file or the new one, never half of one. Tensors go into safetensors with a
SHA-256 digest of their bytes in the metadata; nothing is ever unpickled. This module knows file
formats, not file names: which file holds what is `vaekit.rundir`'s business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from vaekit.errors import CheckpointError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(Path(path), json.dumps(payload, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None when the file does not exist; a damaged file is an error naming it."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read as JSON: {err}.") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds {type(value).__name__}, not a JSON object.")
    return value


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order.

    safetensors checks the header's structure but not the data: a flipped bit in a weight would
    load silently. This digest, stored in the file's metadata, makes such damage an error.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors (moved to the CPU) and string metadata as one safetensors file, with their digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {**(metadata or {}), "sha256": tensors_digest(tensors)}
    atomic_write_bytes(path, safetensors_save(tensors, metadata))


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any damage becomes a CheckpointError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist.") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err}.") from None
    try:
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except Exception as err:  # safetensors raises several types for corrupt input
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt?): {err}.") from None
    if "sha256" in metadata and tensors_digest(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path} fails its checksum: its weights were altered or corrupted on disk.")
    return tensors, metadata


# Names of weights in files written before the posterior became one object (2026-11-30), and their
# names now: a flow's steps and q(z2|z1) moved under the model's `inference`, and the two-layer model's
# bottom encoder lost its padding wrapper. The first matching prefix applies.
LEGACY_PREFIXES = (
    ("encoder.bottom.", "encoder."),
    ("flows.0.conditional.", "inference.conditional."),
    ("flows.", "inference.flows."),
)


def shared_names(model: torch.nn.Module) -> dict[str, str]:
    """Each state-dict name whose tensor is also held under an earlier name -> that earlier name: a
    module shared between two places (the VampPrior's encoder, the ladder's conditionals)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name
    return aliases


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with each shared tensor once, under its first name (safetensors refuses
    two names for one tensor, and one copy is what the model holds)."""
    aliases = shared_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


def _as_current_names(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file's tensors under the model's names: legacy names renamed (LEGACY_PREFIXES), and each
    shared tensor given every name the model holds it under."""
    expected = model.state_dict()
    renamed = {}
    for name, tensor in tensors.items():
        if name not in expected:
            old = next((p for p in LEGACY_PREFIXES if name.startswith(p[0])), None)
            name = name if old is None else old[1] + name.removeprefix(old[0])
        renamed[name] = tensor
    for alias, original in shared_names(model).items():
        if alias not in renamed and original in renamed:
            renamed[alias] = renamed[original]
    return renamed


def load_weights_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Copy weights into `model`, refusing names or shapes that belong to another model."""
    tensors = _as_current_names(model, tensors)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{origin} was written by a different model: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    for name in expected:  # the model's own order, so the message names the first layer that differs
        tensor = tensors[name]
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{origin} was written by a different model: {name} has shape {tuple(tensor.shape)} "
                f"but this config needs {tuple(expected[name].shape)}."
            )
    model.load_state_dict(tensors)


def save_weights(path: Path, model: torch.nn.Module) -> None:
    write_tensors(path, model_tensors(model))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    tensors, _ = read_tensors(path)
    load_weights_into(model, tensors, path)


@dataclass
class EpochTotals:
    """Sums over the images of the current epoch so far, over all ranks: of the ELBO, its
    reconstruction and KL terms (nats), and the number of images they cover."""

    elbo: float = 0.0
    reconstruction: float = 0.0
    kl: float = 0.0
    images: float = 0.0

    def as_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(4,) float64: elbo, reconstruction, kl, images."""
        return torch.tensor(dataclasses.astuple(self), dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> EpochTotals:
        return cls(*t.tolist())

    def means(self) -> tuple[float, float, float]:
        """Per-image means of elbo, reconstruction and kl."""
        n = max(self.images, 1)
        return self.elbo / n, self.reconstruction / n, self.kl / n


@dataclass
class TrainState:
    """Where a run stands; with the weights and optimiser tensors it is all a resume needs.

    Randomness is a pure function of (seed, epoch, step), so no RNG state is kept.
    """

    epoch: int = 0  # epochs completed
    step: int = 0  # optimisation steps taken; schedules and noise are functions of it
    batch_in_epoch: int = 0  # batches of the current epoch done (0 at an epoch boundary)
    totals: EpochTotals = field(default_factory=EpochTotals)  # of the current epoch up to this checkpoint
    seconds: float = 0.0  # training seconds of the current epoch up to this checkpoint
    skipped_steps: int = 0  # non-finite steps skipped (train.skip_nonfinite) over the whole run
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one row per completed epoch
    best_epoch: int = 0  # the epoch of the best validation ELBO so far (model-best.safetensors); 0: none yet

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, origin: Path) -> TrainState:
        """Parse a saved state, also in the untyped form vaekit 0.1 wrote (its 'sums' list and 'skipped')."""
        try:
            raw = json.loads(text)
            if "sums" in raw:  # vaekit 0.1: the four running sums as an unlabelled list
                raw["totals"] = dict(zip(("elbo", "reconstruction", "kl", "images"), raw.pop("sums")))
                raw["skipped_steps"] = raw.pop("skipped")
            return cls(**{**raw, "totals": EpochTotals(**raw.get("totals", {}))})
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{origin} holds a train state this vaekit cannot read ({err}).") from None


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Write weights, optimiser tensors and the train state (JSON in the metadata) as one file, atomically."""
    tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
    opt = optimizer.state_dict()
    extra: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                extra.setdefault(str(pid), {})[key] = value
    metadata = {
        "train_state": state.to_json(),
        "optimizer_param_groups": json.dumps(opt["param_groups"]),
        "optimizer_extra_state": json.dumps(extra),
    }
    write_tensors(path, tensors, metadata)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """Restore model and optimiser from a checkpoint file; return its train state."""
    tensors, metadata = read_tensors(path)
    try:
        groups = json.loads(metadata["optimizer_param_groups"])
        extra = json.loads(metadata["optimizer_extra_state"])
        state_text = metadata["train_state"]
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} lacks its train state metadata ({err}); it was not written by vaekit.") from None
    state = TrainState.from_json(state_text, path)
    load_weights_into(model, {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    for pid, entries in extra.items():
        opt_state.setdefault(int(pid), {}).update(entries)
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} holds optimiser state for a different optimiser or model: {err}.") from None
    _state_in_parameter_layout(optimizer)
    return state


def _state_in_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimiser state tensor its parameter's memory layout. load_state_dict restores them in the
    file's (contiguous) layout, but a fused update walks a parameter, its gradient and its state as one
    flat array: a channels-last conv weight beside contiguous moments would be updated element against
    the wrong element, silently (torch 2.13, CPU)."""
    for parameter, entries in optimizer.state.items():
        for key, value in entries.items():
            moment = isinstance(value, torch.Tensor) and value.shape == parameter.shape
            if moment and value.stride() != parameter.stride():
                entries[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)
