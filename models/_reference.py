"""Reference posteriors (posteriordb): locate, load, relabel and compare.

The reference folder is `$PPL_REFERENCE_DIR` if set, else `<repo root>/../shared/reference`
(repo root = the parent of `models/`). Each posterior has its own sub-folder with
`model.md`, `data.json`, `reference.json` and `draws.npz` (see the README there). The data
are read at run time and never copied into the repository.

Labels follow the reference: Stan names with 1-based indices, `theta[3]`, `Sigma[1,2]`.

Example:
  >>> from models import eight_schools_noncentered as m
  >>> args, kwargs = m.load()
  >>> r = ppl.infer(m.model, *args, method="nuts", **kwargs)
  >>> compare(m.to_reference(r.samples), m.REFERENCE)      # one row per reference scalar
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

ENV_VAR = "PPL_REFERENCE_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_dir() -> Path:
    """The folder holding the posteriordb reference posteriors.

    Raises:
      FileNotFoundError: naming both places looked at, when neither exists.
    """
    env = os.environ.get(ENV_VAR)
    default = REPO_ROOT.parent / "shared" / "reference"
    path = Path(env) if env else default
    if not path.is_dir():
        raise FileNotFoundError(
            f"reference posteriors not found: ${ENV_VAR} is "
            f"{repr(env) if env else 'not set'} and the default {default} does not exist. "
            f"Set {ENV_VAR} to the folder holding the posteriordb sub-folders (sblri-blr, ...)."
        )
    return path


def folder(name: str) -> Path:
    """The sub-folder of one reference posterior, e.g. `folder("arK-arK")`."""
    path = reference_dir() / name
    if not path.is_dir():
        known = sorted(p.name for p in reference_dir().iterdir() if p.is_dir())
        raise FileNotFoundError(f"no reference posterior {name!r} in {reference_dir()}; known: {known}.")
    return path


def load_data(name: str) -> dict:
    """`data.json` of a posterior: lists become float64 numpy arrays, scalars stay Python."""
    with open(folder(name) / "data.json") as f:
        raw = json.load(f)
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else v for k, v in raw.items()}


def load_reference(name: str) -> dict:
    """`reference.json["params"]`: label -> {mean, sd, q05, q50, q95, mcse_mean_approx,
    shape, base, index, derived}."""
    with open(folder(name) / "reference.json") as f:
        return json.load(f)["params"]


def load_draws(name: str) -> dict:
    """`draws.npz` as label -> array of shape (10 chains, 100 draws) (chain-major in the file)."""
    with np.load(folder(name) / "draws.npz") as z:
        return {k: np.asarray(z[k]).reshape(10, -1) for k in z.files}


def label(base: str, index: tuple) -> str:
    """Stan label of a 0-based numpy index: `label("theta", (2,)) == "theta[3]"`."""
    return base if not index else f"{base}[{','.join(str(i + 1) for i in index)}]"


def to_labels(samples: Mapping, sites: Mapping[str, str], sample_dims: int = 2) -> dict:
    """Split site arrays into reference scalars.

    Args:
      samples: site -> array of shape (chains, draws, *shape) (`sample_dims` leading axes).
      sites: site name -> reference base name, e.g. {"theta_trans": "theta_trans", "mu": "mu"}.
      sample_dims: number of leading sample axes to keep.

    Returns:
      label -> array of shape (chains, draws), labels 1-based as in reference.json.
    """
    out = {}
    for site, base in sites.items():
        arr = np.asarray(samples[site])
        shape = arr.shape[sample_dims:]
        for idx in np.ndindex(*shape):
            out[label(base, idx)] = arr[(Ellipsis,) + idx] if idx else arr
    return out


def from_labels(point: Mapping, reference: Mapping | str) -> dict:
    """Inverse of `to_labels` for one point: label -> scalar into base -> array.

    `reference` (a folder name or `load_reference` output) gives each base's shape. Derived
    labels are included like the others.
    """
    ref = load_reference(reference) if isinstance(reference, str) else reference
    out = {}
    for lab, info in ref.items():
        if lab not in point:
            continue
        base, shape = info["base"], tuple(info["shape"])
        arr = out.setdefault(base, np.zeros(shape))
        idx = tuple(i - 1 for i in info["index"])
        if idx:
            arr[idx] = point[lab]
        else:
            out[base] = np.asarray(point[lab], dtype=np.float64)
    return out


def compare(samples: Mapping, reference: Mapping | str):
    """Per reference scalar: our mean and sd against the reference's.

    Args:
      samples: label -> draws (any shape; all axes pooled), as from a model's `to_reference`.
      reference: a posterior folder name or `load_reference` output.

    Returns:
      pandas DataFrame indexed by label with columns mean, sd, ref_mean, ref_sd,
      ref_mcse, z (= |mean - ref_mean| / ref_sd) and sd_ratio (= sd / ref_sd). The common
      pass rule is z < 0.25 for every row.

    Raises:
      KeyError: when a non-derived reference scalar is missing from `samples`.
    """
    import pandas as pd

    ref = load_reference(reference) if isinstance(reference, str) else reference
    missing = [k for k, v in ref.items() if not v.get("derived") and k not in samples]
    if missing:
        raise KeyError(f"compare: samples lack reference scalar(s) {missing}; map sites with to_reference.")
    rows = {}
    for lab, info in ref.items():
        if lab not in samples:
            continue
        x = np.asarray(samples[lab], dtype=np.float64).ravel()
        mean, sd = float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan")
        rows[lab] = dict(
            mean=mean, sd=sd, ref_mean=info["mean"], ref_sd=info["sd"], ref_mcse=info["mcse_mean_approx"],
            z=abs(mean - info["mean"]) / info["sd"], sd_ratio=sd / info["sd"],
        )
    return pd.DataFrame.from_dict(rows, orient="index")
