"""Autoregressive AR(K) time series, conditional likelihood (posteriordb `arK-arK`).

    alpha ~ N(0, 10);  beta[k] ~ N(0, 10), k = 1..K;  sigma ~ HalfCauchy(2.5)
    y[t] ~ N(alpha + sum_k beta[k] y[t - k], sigma),  t = K+1..T

Known answer: the posteriordb reference posterior (`reference()`: beta ~ (0.69, 0.44, 0.11,
-0.04, -0.30), sigma ~ 0.15); `simulate` draws a series with given coefficients.
"""
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

NAME = "ar"
POSTERIOR = "arK-arK"


def reference_dir() -> Path:
    """The shared posteriordb references (`$PPL_REFERENCE_DIR` or ../shared/reference)."""
    env = os.environ.get("PPL_REFERENCE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "reference"


def lagged(y, k):
    """(T - k, k) matrix whose column j holds y[t - j - 1] for t = k..T-1."""
    t = y.shape[0]
    return jnp.stack([y[k - j - 1: t - j - 1] for j in range(k)], axis=-1)


def model(y, k=5):
    alpha = ppl.sample("alpha", dist.Normal(0.0, 10.0))
    beta = ppl.sample("beta", dist.Normal(0.0, 10.0).expand([k]).to_event(1))
    sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    mu = alpha + lagged(y, k) @ beta
    with ppl.plate("time", y.shape[0] - k):
        ppl.observe("y", dist.Normal(mu, sigma), y[k:])


def simulate(seed=0, num_steps=200, alpha=0.0, beta=(0.7, 0.4, 0.1, 0.0, -0.3), sigma=0.15):
    rng = np.random.default_rng(seed)
    beta = np.asarray(beta)
    k = len(beta)
    y = np.zeros(num_steps + 100)
    for t in range(k, len(y)):
        y[t] = alpha + beta @ y[t - k: t][::-1] + sigma * rng.normal()
    return y[100:].astype(np.float32)


def load():
    """(args, kwargs): the posteriordb arK series (T = 200, K = 5)."""
    data = json.loads((reference_dir() / POSTERIOR / "data.json").read_text())
    return (jnp.asarray(np.asarray(data["y"], np.float32)),), {"k": int(data["K"])}


def reference():
    """Reference posterior summaries with 0-based names: {'beta[0]': {'mean', 'sd'}, ...}."""
    ref = json.loads((reference_dir() / POSTERIOR / "reference.json").read_text())["params"]
    out = {}
    for name, v in ref.items():
        if "[" in name:
            base, idx = name[:-1].split("[")
            name = f"{base}[{int(idx) - 1}]"
        out[name] = {"mean": v["mean"], "sd": v["sd"]}
    return out
