"""A run folder knows what it is: manifest, identity rules, a lock, one results record.

``<export_dir>/run.json`` (the manifest) holds everything that determines the
run's result: the model family and its resolved config, the data (dataset or
file, checksums, protocol and its config, the split's fingerprint), the seed,
the optimizer and training config, precision, workers and a warm start. The
rules (README, "Run folders"):

* ``--train`` into a folder of another run (any manifest key but
  :data:`training.config.RUN_LENGTH_KEYS` differs) is refused in one line
  naming the keys; ``--fresh`` moves the old run aside, never deletes it.
* ``--test``/``--benchmark`` read the run's config from the manifest; a flag
  given on the command line that contradicts it is refused.
* one process at a time: :meth:`RunFolder.lock` holds an ``flock`` on
  ``.lock`` (the kernel drops it when the process dies, so a killed run never
  blocks the next one).
* ``results.json`` keeps one section per mode; a ``--test`` adds its section
  and keeps the training one.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from data import files
from data.errors import ConfigError
from training.config import LOCATION_KEYS, RUN_LENGTH_KEYS, flatten, jsonable

MANIFEST = "run.json"
RESULTS = "results.json"
LOCK = ".lock"
# Recorded for the reader, not part of what the run is.
RECORD_ONLY_KEYS = frozenset({"tfcf_version", "created", "command", "settings"})
# What a run folder holds once anything was written into it.
RUN_ENTRIES = ("checkpoints", "best", "model", "saved_model", RESULTS, MANIFEST)


def version() -> str:
    """The installed tfcf version."""
    try:
        from importlib.metadata import version as dist_version

        return dist_version("tfcf")
    except Exception:  # running from a checkout that was never installed
        return "unknown"


def split_fingerprint(split) -> str:
    """A sha256 of a split's id maps and the shapes and sizes of its parts.

    Two splits with the same fingerprint have the same rows and columns in the
    same order, so a model trained on one scores the other's columns correctly.
    """
    digest = hashlib.sha256()
    for name in sorted(vars(split)):
        value = getattr(split, name)
        if isinstance(value, np.ndarray):
            digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            digest.update(np.ascontiguousarray(value.astype(str) if value.dtype == object else value).tobytes())
        elif hasattr(value, "nnz"):
            digest.update(f"{name}:{value.shape}:{value.nnz}".encode())
    return digest.hexdigest()


def differences(old: dict, new: dict, ignore: frozenset = RUN_LENGTH_KEYS) -> list[str]:
    """The manifest keys whose values differ, each as ``key: old -> new``.

    Args:
      ignore: keys that may differ (besides locations and record-only keys).
    """
    skip = ignore | LOCATION_KEYS | RECORD_ONLY_KEYS
    a, b = flatten(jsonable(old)), flatten(jsonable(new))
    keys = [k for k in dict.fromkeys([*a, *b]) if not any(k == s or k.startswith(s + ".") for s in skip)]
    return [f"{k}: {_show(a.get(k))} -> {_show(b.get(k))}" for k in keys if a.get(k) != b.get(k)]


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


class RunFolder:
    """One run's folder: its manifest, results, lock and replacement."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # --- lock -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str = "") -> Iterator[None]:
        """Holds the folder for this process; another process gets a one-line refusal.

        Raises:
          ConfigError: the folder is a file, cannot be written, or is in use.
        """
        self.check_writable()
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
                raise ConfigError(f"{self.path} is in use by {holder}; wait for it to end, or use another "
                                  f"--export_dir") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()} ({command or 'tfcf'})".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def check_writable(self) -> None:
        """Creates the folder; a one-line error when it is a file or read-only."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--export_dir {self.path} is a file, not a folder; pass a folder path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the run folder {self.path}: {err.strerror}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ConfigError(f"the run folder {self.path} is read-only; make it writable or use another "
                              f"--export_dir")

    # --- manifest -------------------------------------------------------------------
    def has_run(self) -> bool:
        """Whether anything of a run was written here."""
        return any((self.path / entry).exists() for entry in RUN_ENTRIES)

    def manifest(self) -> Optional[dict]:
        """The manifest, or None when there is none.

        Raises:
          ConfigError: it is not valid JSON.
        """
        path = self.path / MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path} is damaged ({err}); use another --export_dir, or --fresh to move this run "
                              f"aside") from None

    def write_manifest(self, manifest: dict) -> None:
        files.write_json(self.path / MANIFEST, manifest)

    def move_aside(self) -> Optional[Path]:
        """Moves the folder's run into a sibling ``<name>.replaced-<time>``; returns it (None: nothing there)."""
        if not self.has_run():
            return None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
        target.mkdir(parents=True)
        for entry in self.path.iterdir():
            if entry.name != LOCK:
                shutil.move(str(entry), str(target / entry.name))
        return target

    # --- results --------------------------------------------------------------------
    def results(self) -> dict:
        """The results record ({} when there is none or it is unreadable: it is rewritten)."""
        try:
            return json.loads((self.path / RESULTS).read_text())
        except (OSError, ValueError):
            return {}

    def write_results(self, results: dict) -> None:
        files.write_json(self.path / RESULTS, results)


def manifest_of(cfg, model_config: dict, info: dict, fingerprint: str, policy: str, workers: int,
                trainable: bool) -> dict:
    """The manifest of a run (see the module docstring).

    Args:
      cfg: the :class:`training.config.RunConfig`.
      model_config: the resolved hyper-parameters (:func:`training.fit.model_config`).
      info: :func:`data.prepare.prepare`'s info (resolved protocol, checksums).
      fingerprint: :func:`split_fingerprint` of the prepared split.
      trainable: False for closed-form baselines (no optimizer, epochs or precision).
    """
    import dataclasses

    data = dataclasses.asdict(cfg.data)
    data.update(protocol=info["protocol"], checksums=info.get("checksums"), split_fingerprint=fingerprint)
    manifest = {"tfcf_version": version(), "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": list(cfg.command) if cfg.command else None, "settings": cfg.settings,
                "model": {"family": cfg.model, "config": model_config,
                          "major": cfg.model_params.get("major", "users")},
                "seed": cfg.seed, "data": data}
    if trainable:
        train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if f"train.{k}" not in LOCATION_KEYS}
        manifest.update(optim=dataclasses.asdict(cfg.optim), train=train, precision=policy, workers=workers,
                        warm_start=_warm_start_record(cfg.warm_start))
    return jsonable(manifest)


def _warm_start_record(folder: Optional[str]) -> Optional[dict]:
    if not folder:
        return None
    source = RunFolder(folder)
    return {"from": str(Path(folder).resolve()),
            "split_fingerprint": (source.manifest() or {}).get("data", {}).get("split_fingerprint"),
            "epochs": source.results().get("train", {}).get("epochs")}


# How a RunConfig key (as main.py's explicit flags name them) reads in a manifest.
def manifest_value(manifest: dict, key: str) -> Any:
    """The value of a :class:`RunConfig` key (``seed``, ``data.dataset``, ``model_params.hidden``...) in a manifest.

    Returns:
      The value, or KeyError's sentinel ``_MISSING`` when the manifest does not hold it.
    """
    if key == "model":
        return manifest["model"]["family"]
    if key == "use_amp":
        return manifest.get("precision", "float32") != "float32" if "precision" in manifest else _MISSING
    if key == "model_params.major":
        return manifest["model"].get("major", "users")
    if key.startswith("model_params."):
        return manifest["model"]["config"].get(key.split(".", 1)[1], _MISSING)
    node: Any = manifest
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()
