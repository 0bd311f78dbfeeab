"""The run folder: configs, weights and train state, written atomically and read without pickle.

Layout of a run folder:
    config.json              the resolved RunConfig (rebuilds the model with no other input)
    model.safetensors        weights of the last completed epoch (what evaluation and pictures use)
    checkpoint.safetensors   everything to resume: weights, optimiser tensors, and the train state
                             (step, epoch, running sums) as JSON in the file's metadata
    metrics.jsonl            one JSON line per epoch
    summary.json             final test figures
    images/                  PNG grids
Every file is written to a temporary name, flushed to disk and renamed into place, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not protected from each other
    fcntl = None  # type: ignore[assignment]

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from vaekit.config import RunConfig
from vaekit.errors import CheckpointError, ConfigError
from vaekit.models.vae import VAE, build_model

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


IMAGES_DIR = "images"
RUN_FILES = (CONFIG_FILE, MODEL_FILE, CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE, "report.html",
             "evaluation-test.json", "evaluation-valid.json")


def remove_run_files(run_dir: Path) -> None:
    """Delete the files vaekit writes in a run folder (for --overwrite), and nothing else."""
    for name in RUN_FILES:
        (Path(run_dir) / name).unlink(missing_ok=True)
    shutil.rmtree(Path(run_dir) / IMAGES_DIR, ignore_errors=True)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder, or refuse at once if another process holds it.

    An advisory flock on RUN_DIR/.lock: the operating system drops it when the holder exits,
    however it exits (kill -9 included), so a crashed run never leaves the folder locked.
    Stale temporary files of a writer that died mid-write are removed once the lock is held.
    """
    path = Path(run_dir) / LOCK_FILE
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise CheckpointError(
                    f"{run_dir} is in use by {holder}; wait for that run to finish or stop it first."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        for stale in Path(run_dir).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield
        finally:
            handle.truncate(0)


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


def save_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, config.to_json())


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not a vaekit run folder: it has no {CONFIG_FILE}.")
    try:
        return RunConfig.load(path)
    except ConfigError as err:
        raise CheckpointError(f"the run's config is invalid: {err}") from None


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


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {**(metadata or {}), "sha256": tensors_digest(tensors)}
    atomic_write_bytes(path, safetensors_save(tensors, metadata))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any corruption becomes a CheckpointError."""
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


def load_weights_into(model: VAE, tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Copy weights into `model`, refusing names or shapes that belong to another model."""
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


def save_model(run_dir: Path, model: VAE) -> None:
    _save_safetensors(Path(run_dir) / MODEL_FILE, model.state_dict())


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, RunConfig]:
    """Rebuild a trained model from its run folder (config.json + model.safetensors), in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist.")
    config = load_config(run_dir)
    model = build_model(config.model)
    tensors, _ = _read_safetensors(run_dir / MODEL_FILE)
    load_weights_into(model, tensors, run_dir / MODEL_FILE)
    return model.to(device).eval(), config


def save_checkpoint(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write weights, optimiser tensors and the JSON train state as one file, atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    extra: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                extra.setdefault(str(pid), {})[key] = value
    metadata = {
        "train_state": json.dumps(state),
        "optimizer_param_groups": json.dumps(opt["param_groups"]),
        "optimizer_extra_state": json.dumps(extra),
    }
    _save_safetensors(Path(run_dir) / CHECKPOINT_FILE, tensors, metadata)


def load_checkpoint(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimiser from `checkpoint.safetensors`; return the train state."""
    path = Path(run_dir) / CHECKPOINT_FILE
    tensors, metadata = _read_safetensors(path)
    try:
        state = json.loads(metadata["train_state"])
        groups = json.loads(metadata["optimizer_param_groups"])
        extra = json.loads(metadata["optimizer_extra_state"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} lacks its train state metadata ({err}); it was not written by vaekit.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has a train state that is not a JSON object; it was not written by vaekit.")
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_weights_into(model, weights, path)
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
    return state


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch metric lines of a run (an unreadable trailing line from a crash is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(Path(path), json.dumps(payload, indent=2) + "\n")
