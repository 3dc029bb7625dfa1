"""Checkpoints: a run's state after each chunk, written atomically, and what it belongs to.

A checkpoint is a directory:

- ``run.json``: the run's identity (model structure, a hash of the data, the method and its
  options, the key), written once. Running the same call again resumes; a call that differs
  is refused with an error naming each difference.
- ``state-g<group>-<iteration>.npz``: the state of each group of chains after its last
  complete chunk (the leaves of a pytree, named by their paths), the two newest kept. A file
  that cannot be read (a kill while it was written cannot leave one, the write is atomic;
  but disks fail) is skipped for the one before it.
- ``draws/`` and ``draws.nc``: the draws (``ppl.runtime.store.DiskStore``).
- ``done.json``: the run finished (its result can be returned at once).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

_STATE = re.compile(r"state-g(\d+)-(\d+)\.npz$")
KEEP = 2


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def data_hash(ld) -> str:
    """A hash of the model's data and fixed params (values, shapes and dtypes)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves((ld.data, ld.params)):
        a = np.asarray(leaf)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _option(value) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_option(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _option(v) for k, v in value.items()}
    if hasattr(value, "shape"):
        return np.asarray(value).tolist()
    return type(value).__name__


def identity(ld, method, key, ignore=()) -> dict:
    """What a run is: model structure, data, method and options (but ``ignore``), key."""
    spec = ld.spec
    options = {f.name: _option(getattr(method, f.name)) for f in dataclasses.fields(method)
               if f.name not in ignore}
    return {
        "model": getattr(ld.model, "__qualname__", repr(ld.model)),
        "latents": [[lat.name, list(lat.shape)] for lat in spec.latents],
        "observed": list(spec.observed),
        "deterministic": list(spec.deterministic),
        "data": data_hash(ld),
        "method": method.name,
        "options": options,
        "key": np.asarray(key).tolist(),
    }


def _differences(old: dict, new: dict) -> list:
    out = []
    if old.get("model") != new["model"] or old.get("latents") != new["latents"] or \
            old.get("observed") != new["observed"] or old.get("deterministic") != new["deterministic"]:
        out.append(f"the model (checkpoint: {old.get('model')} with latent sites {old.get('latents')}; now: "
                   f"{new['model']} with {new['latents']})")
    if old.get("data") != new["data"]:
        out.append("the data (their values, shapes or dtypes differ)")
    if old.get("method") != new["method"]:
        out.append(f"the method (checkpoint: {old.get('method')!r}; now: {new['method']!r})")
    else:
        changed = [f"{k}={old.get('options', {}).get(k)!r} -> {v!r}" for k, v in new["options"].items()
                   if old.get("options", {}).get(k) != v]
        if changed:
            out.append(f"the method's options ({', '.join(changed)})")
    if old.get("lanes", False) != new.get("lanes", False):
        def how(lanes):
            return "vectorised chains run as lanes" if lanes else "chains not run as lanes"
        out.append(f"how the chains run (checkpoint: {how(old.get('lanes', False))}; now: "
                   f"{how(new.get('lanes', False))}; resume with the checkpoint's chain_method)")
    if "groups" in old and old["groups"] != new.get("groups"):  # (older checkpoints do not say)
        out.append(f"how the chains are grouped (checkpoint: {old['groups']} group(s) of chains run at once; now: "
                   f"{new.get('groups')}; on a single CPU device ppl runs one group per core (see "
                   f"chain_method), so resume on a machine with as many cores as the one that wrote it)")
    if old.get("key") != new["key"]:
        out.append(f"the key (checkpoint: {old.get('key')}; now: {new['key']})")
    return out


class Checkpoint:
    """A run's checkpoint directory (see the module docstring).

    Args:
      path: the directory (created if absent).
      identity: :func:`identity` of the run; a directory holding another run's checkpoint is
        refused with a ``ValueError`` naming the differences.
    """

    def __init__(self, path, identity: dict):
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a file; give a directory path (it is created).")
        self.path.mkdir(parents=True, exist_ok=True)
        meta = self.path / "run.json"
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError):
                old = None
            if old is not None:
                diff = _differences(old, identity)
                if diff:
                    raise ValueError(
                        f"checkpoint {str(self.path)!r} belongs to another run: it differs in "
                        f"{'; '.join(diff)}. Use another checkpoint path, or delete this one to start over.")
        if not meta.exists() or old is None:
            _atomic(meta, lambda fh: fh.write(json.dumps(identity, indent=1).encode()))

    # -- states --------------------------------------------------------------------------
    def _states(self, group: int):
        out = []
        for p in self.path.glob(f"state-g{group}-*.npz"):
            m = _STATE.search(p.name)
            if m:
                out.append((int(m.group(2)), p))
        return sorted(out, reverse=True)

    def save(self, group: int, iteration: int, state, extra: Optional[dict] = None) -> None:
        """Write group ``group``'s ``state`` after ``iteration`` iterations (atomically) and
        drop all but the newest :data:`KEEP` of its states."""
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
        for k, v in (extra or {}).items():
            arrays[f"extra:{k}"] = np.asarray(v)
        _atomic(self.path / f"state-g{group}-{iteration:012d}.npz", lambda fh: np.savez(fh, **arrays))
        for _, p in self._states(group)[KEEP:]:
            p.unlink(missing_ok=True)

    def load(self, group: int, template, usable=lambda iteration: True):
        """``(iteration, state, extra)`` of the group's newest readable state that fits
        ``template`` (a pytree of arrays or ShapeDtypeStructs) and whose iteration is
        ``usable`` (e.g. its draws are all on disk), or None."""
        leaves, tree = jax.tree_util.tree_flatten_with_path(template)
        for iteration, p in self._states(group):
            if not usable(iteration):
                continue
            try:
                with np.load(p) as f:
                    arrays = {k: f[k] for k in f.files}
                values = []
                for path, leaf in leaves:
                    a = arrays[jax.tree_util.keystr(path)]
                    if a.shape != tuple(np.shape(leaf)) or a.dtype != np.dtype(leaf.dtype):
                        raise ValueError("shape")
                    values.append(a)
            except Exception:  # noqa: BLE001 - damaged or foreign: try the one before
                continue
            extra = {k[len("extra:"):]: v for k, v in arrays.items() if k.startswith("extra:")}
            return iteration, jax.tree_util.tree_unflatten(tree, values), extra
        return None

    def save_result(self, tree) -> None:
        """Keep a finished run's final outputs (a pytree of arrays) as ``result.npz``."""
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
        _atomic(self.path / "result.npz", lambda fh: np.savez(fh, **arrays))

    def load_result(self, template):
        """The final outputs saved by :meth:`save_result`, shaped as ``template``, or None."""
        leaves, tree = jax.tree_util.tree_flatten_with_path(template)
        try:
            with np.load(self.path / "result.npz") as f:
                values = [f[jax.tree_util.keystr(path)] for path, _ in leaves]
        except Exception:  # noqa: BLE001 - absent or damaged: recomputed from the state
            return None
        return jax.tree_util.tree_unflatten(tree, values)

    # -- completion ------------------------------------------------------------------------
    def finish(self, info: dict) -> None:
        _atomic(self.path / "done.json", lambda fh: fh.write(json.dumps(info).encode()))

    def finished(self) -> Optional[dict]:
        try:
            return json.loads((self.path / "done.json").read_text())
        except (OSError, ValueError):
            return None

    def unfinish(self) -> None:
        (self.path / "done.json").unlink(missing_ok=True)
