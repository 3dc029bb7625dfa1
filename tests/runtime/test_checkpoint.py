"""Runs that survive: chunks, Ctrl-C, SIGKILL and resume, corrupt files, more draws later.

Every MCMC method runs through one chunked driver; the draws cannot depend on where chunks
end, on being killed and resumed, or on being extended (float64 here: the comparisons are
exact up to 1e-9, the contract)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import ppl
from ppl import dist


def _ctrl_c_on():
    """In the child: SIGINT at its default, so Python installs its Ctrl-C handler even when
    the tests run in a background job (whose children start with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# The start of every child script: float64, a two-parameter normal model and its data.
_CHILD_MODEL = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, ppl
    from ppl import dist
    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, sigma), y)
    y = jnp.array(np.random.default_rng(0).normal(1.0, 2.0, 20))
""")

CHILD = _CHILD_MODEL + textwrap.dedent("""
    path, num_samples, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    r = ppl.infer(model, y, method=ppl.NUTS(num_warmup=300, num_samples=num_samples, chunk_size=chunk,
                                           progress_bar=False), key=4,
                  checkpoint=None if path == "-" else path)
    print(json.dumps({"interrupted": bool(r.diagnostics.get("interrupted", False)),
                      "draws": int(r.num_draws), "warnings": r.warnings,
                      "mu": np.asarray(r.samples["mu"]).tolist()}))
""")


def two_parameter_model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, sigma), y)


Y = np.random.default_rng(0).normal(1.0, 2.0, 20)


def _child(*args):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_on)


def _wait_for_states(path: Path, count: int, timeout: float = 120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(list(path.glob("state-g*.npz"))) >= count and len(list(path.glob("draws/*.npz"))) >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared in {path} within {timeout} s")


@pytest.mark.timeout(240)
def test_a_killed_run_resumes_to_the_draws_of_an_uninterrupted_one(tmp_path, x64):
    path = tmp_path / "run"
    whole_child = _child("-", 1500, 10 ** 6)  # the uninterrupted run, beside the others
    child = _child(path, 1500, 40)
    _wait_for_states(path, 2)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done = json.loads(_child(path, 1500, 40).communicate(timeout=200)[0].strip().splitlines()[-1])
    whole = json.loads(whole_child.communicate(timeout=200)[0].strip().splitlines()[-1])
    assert not done["interrupted"] and done["draws"] == 1500
    np.testing.assert_allclose(done["mu"], whole["mu"], rtol=0, atol=1e-9)


@pytest.mark.timeout(240)
def test_ctrl_c_returns_the_draws_so_far_within_a_chunk(tmp_path):
    path = tmp_path / "run"
    child = _child(path, 200_000, 50)
    _wait_for_states(path, 2)
    sent = time.time()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert time.time() - sent < 20, "Ctrl-C was not honoured within a chunk"
    assert child.returncode == 0, err[-2000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["interrupted"] and 0 < r["draws"] < 200_000
    assert any("interrupted" in w and "resume" in w for w in r["warnings"])
    assert np.isfinite(np.asarray(r["mu"])).all()


@pytest.mark.timeout(120)
def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    path = tmp_path / "run"
    child = _child(path, 200_000, 50)
    _wait_for_states(path, 2)
    child.send_signal(signal.SIGINT)
    time.sleep(0.01)
    sent = time.time()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert time.time() - sent < 10
    assert child.returncode != 0 and "KeyboardInterrupt" in err


@pytest.mark.parametrize("method", [ppl.NUTS, ppl.HMC, ppl.MH])
def test_chunked_draws_equal_one_chunk_and_checkpoints_extend(method, tmp_path, x64):
    options = dict(num_warmup=200, num_samples=300, progress_bar=False)
    one = ppl.infer(two_parameter_model, Y, method=method(**options), key=1)
    chunked = ppl.infer(two_parameter_model, Y, method=method(chunk_size=37, **options), key=1,
                        checkpoint=tmp_path / "c")
    np.testing.assert_array_equal(np.asarray(chunked.samples["mu"]), one.samples["mu"])
    # more draws later: the chains go on from where they stopped, without new warmup
    longer = ppl.infer(two_parameter_model, Y, method=method(**{**options, "num_samples": 450}), key=1)
    extended = ppl.infer(two_parameter_model, Y, method=method(**{**options, "num_samples": 450}), key=1,
                         checkpoint=tmp_path / "c")
    np.testing.assert_allclose(np.asarray(extended.samples["mu"]), longer.samples["mu"], rtol=0, atol=1e-9)
    assert extended.diagnostics["num_warmup_grad_evals"] == chunked.diagnostics["num_warmup_grad_evals"]
    # a finished checkpoint returns at once, compiling nothing
    again = ppl.infer(two_parameter_model, Y, method=method(**{**options, "num_samples": 450}), key=1,
                      checkpoint=tmp_path / "c")
    assert again.timing["run_s"] == 0.0
    np.testing.assert_array_equal(np.asarray(again.samples["sigma"]), np.asarray(extended.samples["sigma"]))


def test_gibbs_runs_through_the_same_driver_with_checkpoints(tmp_path, x64):
    def mixture(y):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        with ppl.plate("i", y.shape[0]):
            z = ppl.sample("z", dist.Bernoulli(p))
            ppl.observe("y", dist.Normal(z.astype(y.dtype), 0.5), y)

    y = np.array([0.9, 0.1, 1.2, -0.3, 0.7])
    options = dict(num_warmup=100, num_samples=150, progress_bar=False)
    one = ppl.infer(mixture, y, method=ppl.Gibbs(**options), key=2)
    chunked = ppl.infer(mixture, y, method=ppl.Gibbs(chunk_size=23, **options), key=2, checkpoint=tmp_path / "g")
    for site in ("p", "z"):
        np.testing.assert_array_equal(np.asarray(chunked.samples[site]), one.samples[site])


def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(tmp_path):
    options = dict(num_warmup=50, num_samples=50, num_chains=2, progress_bar=False)
    ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=0, checkpoint=tmp_path / "c")
    cases = [
        (dict(method=ppl.NUTS(**options), key=1), "the key"),
        (dict(method=ppl.NUTS(**{**options, "target_accept": 0.9}), key=0), "target_accept=0.8 -> 0.9"),
        (dict(method=ppl.HMC(**options), key=0), "the method"),
    ]
    for kwargs, text in cases:
        with pytest.raises(ValueError, match=text):
            ppl.infer(two_parameter_model, Y, checkpoint=tmp_path / "c", **kwargs)
    with pytest.raises(ValueError, match="the data"):
        ppl.infer(two_parameter_model, Y + 1.0, method=ppl.NUTS(**options), key=0, checkpoint=tmp_path / "c")

    def other(y):
        m = ppl.sample("m", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(m, 1.0), y)

    with pytest.raises(ValueError, match="the model"):
        ppl.infer(other, Y, method=ppl.NUTS(**options), key=0, checkpoint=tmp_path / "c")
    with pytest.raises(ValueError, match="does not write checkpoints"):
        ppl.infer(two_parameter_model, Y, method="importance", key=0, checkpoint=tmp_path / "i")


def test_damaged_files_are_detected_and_the_run_restarts_from_the_last_good_chunk(tmp_path, x64):
    options = dict(num_warmup=100, num_samples=200, num_chains=2, chunk_size=30, progress_bar=False)
    path = tmp_path / "c"
    whole = ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3)
    ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3, checkpoint=path)
    (path / "done.json").unlink()  # as if it had been killed at the end
    newest = sorted(path.glob("state-g0-*.npz"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated state
    last = sorted(path.glob("draws/g0-*.npz"))[-1]
    last.write_bytes(b"not an npz file")  # and a damaged draws file
    resumed = ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3, checkpoint=path)
    assert resumed.timing["run_s"] > 0  # it ran the lost chunks again
    np.testing.assert_allclose(np.asarray(resumed.samples["mu"]), whole.samples["mu"], rtol=0, atol=1e-9)


FIT_CHILD = _CHILD_MODEL + textwrap.dedent("""
    path, num_steps, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    method = ppl.VI(num_steps=num_steps, chunk_size=chunk, progress_bar=False)
    r = ppl.infer(model, y, method=method, key=5, checkpoint=None if path == "-" else path)
    print(json.dumps({"interrupted": bool(r.diagnostics.get("interrupted", False)),
                      "steps": int(r.diagnostics["num_steps"]), "warnings": r.warnings,
                      "mu": np.asarray(r.samples["mu"]).tolist(), "bound": r.log_evidence}))
""")


@pytest.mark.timeout(240)
def test_vi_interrupted_returns_the_fit_so_far_and_resumes_to_the_uninterrupted_fit(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    run = lambda *a: subprocess.Popen([sys.executable, "-c", FIT_CHILD, *map(str, a)], env=env,  # noqa: E731
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=_ctrl_c_on)
    path, steps = tmp_path / "vi", 20_000
    whole_child = run("-", steps, 10 ** 6)  # the uninterrupted fit, beside the others
    child = run(path, steps, 100)
    _wait_for_state(path)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-2000:]
    first = json.loads(out.strip().splitlines()[-1])
    assert first["interrupted"] and 0 < first["steps"] < steps and np.isfinite(first["bound"])
    assert any("interrupted" in w for w in first["warnings"])
    # the same call goes on from the last saved chunk to the fit of an uninterrupted run
    done = json.loads(run(path, steps, 100).communicate(timeout=200)[0].strip().splitlines()[-1])
    whole = json.loads(whole_child.communicate(timeout=200)[0].strip().splitlines()[-1])
    assert not done["interrupted"] and done["steps"] == whole["steps"] == steps
    np.testing.assert_allclose(done["mu"], whole["mu"], rtol=0, atol=1e-9)
    assert abs(done["bound"] - whole["bound"]) < 1e-9


def _wait_for_state(path: Path, timeout: float = 120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(path.glob("state-g0-*.npz")):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared in {path} within {timeout} s")


@pytest.mark.parametrize("method", [ppl.VI(num_steps=600), ppl.VI(num_steps=300, guide="full_rank"),
                                    ppl.MAP(), ppl.MLE()], ids=["vi", "vi-full-rank", "map", "mle"])
def test_optimisers_in_chunks_equal_one_chunk_and_checkpoint(method, tmp_path, x64):
    import dataclasses

    one = ppl.infer(two_parameter_model, Y, method=method, key=6)
    chunked_method = dataclasses.replace(method, chunk_size=7)
    chunked = ppl.infer(two_parameter_model, Y, method=chunked_method, key=6, checkpoint=tmp_path / "c")
    for site in ("mu", "sigma"):
        np.testing.assert_array_equal(np.asarray(chunked.samples[site]), np.asarray(one.samples[site]))
    np.testing.assert_array_equal(chunked.diagnostics["loss"], one.diagnostics["loss"])
    again = ppl.infer(two_parameter_model, Y, method=chunked_method, key=6, checkpoint=tmp_path / "c")
    assert again.timing["run_s"] == 0.0
    np.testing.assert_array_equal(np.asarray(again.samples["mu"]), np.asarray(one.samples["mu"]))
    with pytest.raises(ValueError, match="the key"):
        ppl.infer(two_parameter_model, Y, method=chunked_method, key=7, checkpoint=tmp_path / "c")


def test_lanes_resume_from_a_chunk_whose_chains_ran_ahead(tmp_path, x64):
    """Vectorised NUTS chains run as lanes carry the iterations a chain ran ahead past a
    chunk's end, and the one it had in flight, in its state (`ppl.mcmc.lanes.Ahead`): a run resumed from such a state (the
    newer states removed, as if killed) gives the draws of an uninterrupted run, and resuming
    it without lanes is refused, naming the difference."""
    options = dict(num_warmup=100, num_samples=120, num_chains=4, chunk_size=25, chain_method="vectorized",
                   progress_bar=False)
    path = tmp_path / "c"
    whole = ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3)
    ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3, checkpoint=path)
    (path / "done.json").unlink()
    states = sorted(path.glob("state-g0-*.npz"), key=lambda p: int(p.stem.rsplit("-", 1)[-1]))
    with np.load(states[-2]) as f:  # the state before the last: some chain had run ahead there
        assert np.asarray(f[".ahead.count"]).max() > 0
        assert np.asarray(f[".ahead.phase"]).max() > 0  # and some had a transition in flight
    states[-1].unlink()
    resumed = ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**options), key=3, checkpoint=path)
    assert resumed.timing["run_s"] > 0
    np.testing.assert_allclose(np.asarray(resumed.samples["mu"]), whole.samples["mu"], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="how the chains run"):
        ppl.infer(two_parameter_model, Y, method=ppl.NUTS(**{**options, "chain_method": "sequential"}), key=3,
                  checkpoint=path)


def test_a_checkpointed_run_stopped_in_warmup_returns_no_draws(tmp_path):
    """A checkpointed run stopped before its first draw has nothing on disk to join: it
    returns 0 draws per chain, shaped as its sites (it failed reading a draws.nc with no
    posterior; seen when a loaded machine made Ctrl-C land in warmup)."""
    from ppl.runtime import chunks as _chunks

    calls = []
    real = _chunks.run

    def stop_after_two(execute, groups, rows, length, on_chunk, **kw):
        class Stop:  # an interrupt requested once two chunks are in
            @property
            def requested(self):
                return len(calls) >= 2

        def counted(c):
            calls.append(c)
            on_chunk(c)
        return real(execute, groups, rows, length, counted, **{**kw, "interrupt": Stop(), "concurrent": False})

    _chunks.run = stop_after_two
    try:
        with pytest.warns(UserWarning):
            r = ppl.infer(two_parameter_model, Y, method=ppl.NUTS(num_warmup=300, num_samples=100, num_chains=2,
                                                                  chunk_size=20, progress_bar=False),
                          key=0, checkpoint=tmp_path / "c")
    finally:
        _chunks.run = real
    assert np.asarray(r.samples["mu"]).shape == (2, 0)


def test_a_checkpoint_is_resumed_only_with_its_grouping_of_chains(tmp_path, monkeypatch):
    """Each group of chains has its own states and draws on disk; a machine with another
    number of cores groups the chains otherwise, and resuming there is refused, naming it."""
    from ppl.runtime import program as _program

    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    method = ppl.NUTS(num_warmup=20, num_samples=20, num_chains=4, chain_method="vectorized", progress_bar=False)
    ppl.infer(two_parameter_model, Y, method=method, key=3, checkpoint=tmp_path / "c")
    assert {p.name.split("-")[1] for p in (tmp_path / "c").glob("state-g*.npz")} == {"g0", "g1"}
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 1)
    with pytest.raises(ValueError, match="how the chains are grouped"):
        ppl.infer(two_parameter_model, Y, method=method, key=3, checkpoint=tmp_path / "c")
