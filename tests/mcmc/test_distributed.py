"""Chains over devices and processes (`ppl.runtime.distributed`): the same draws on any layout.

Two CPU processes on this machine join one `jax.distributed` run (a local coordinator); each
computes half the chains of the same `ppl.infer` call and gets every chain back. Their draws
must be the draws of one process running the call alone, in float64 to 1e-9 (chain c's keys
are `fold_in(key, c)` whatever device holds it). The children run with a deadline and are
killed if it passes (a hang in a collective must fail the test, not the suite)."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime import chunks

OPTIONS = dict(num_warmup=300, num_samples=100, num_chains=4, progress_bar=False)
# HMC in the two-process run: chunks of 25 iterations, and Ctrl-C in process 1 after 13 of them.
HMC_OPTIONS = dict(OPTIONS, num_samples=200, chunk_size=25)
METHODS = {"nuts": ppl.NUTS, "hmc": ppl.HMC}
KEY = 3
CHILD_SECONDS = 200

# Both children's start (in the two-process one, after `jax.distributed.initialize`, which
# must come before anything starts JAX's backend).
_HEADER = f"OPTIONS = {OPTIONS!r}\nHMC_OPTIONS = {HMC_OPTIONS!r}\n" + textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp
    import ppl
    from ppl import dist
    from ppl.runtime import distributed

    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, sigma), y)

    y = jnp.array(np.random.default_rng(0).normal(1.0, 2.0, 20))

    # What each run's outputs looked like in this process: global arrays whose local shard
    # holds this process's chains only.
    held = []
    _host = distributed.Placement.host
    def host(self, tree):
        leaf = jax.tree.leaves(tree)[0]
        held.append([bool(leaf.is_fully_addressable),
                     sorted({s.index[0].start or 0 for s in leaf.addressable_shards})])
        return _host(self, tree)
    distributed.Placement.host = host

    def draws(method):
        r = ppl.infer(model, y, method=method, key=3)
        return {"mu": np.asarray(r.samples["mu"]).tolist(), "sigma": np.asarray(r.samples["sigma"]).tolist(),
                "interrupted": bool(r.diagnostics.get("interrupted", False))}

    def error(call):
        try:
            call()
        except ValueError as e:
            return str(e)
        return None
""")

TWO_PROCESSES = textwrap.dedent("""
    import sys
    import jax
    pid, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives between processes
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
""") + _HEADER + textwrap.dedent("""
    sharding = distributed.chain_sharding(4)
    out = {"processes": jax.process_count(), "devices": jax.device_count(),
           "local_devices": jax.local_device_count(),
           "groups": ppl.NUTS(num_chains=4)._groups(),
           "sharding_devices": len(sharding.device_set),
           "local_chains": sorted(int(c) for s in distributed.Placement(sharding).chains(np.arange(4)).addressable_shards
                                  for c in np.asarray(s.data))}
    # chain_method="auto" (the default): vectorised chains sharded over both processes.
    out["nuts"] = draws(ppl.NUTS(**OPTIONS))
    # Ctrl-C in process 1 once its 13th chunk is done (the init program's output is the first
    # gathered); its worker waits for the main thread to see it. Both processes stop there.
    import os, signal, time
    before = len(held)
    def ctrl_c(self, tree):
        gathered = host(self, tree)
        if pid == 1 and len(held) == before + 14:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
        return gathered
    distributed.Placement.host = ctrl_c
    out["hmc"] = draws(ppl.HMC(**HMC_OPTIONS))
    distributed.Placement.host = host
    out["held"] = held
    out["agree"] = [distributed.agree_on_chunk(10 + pid, False), distributed.agree_on_chunk(10, pid == 1)]
    out["checkpoint_error"] = error(lambda: ppl.infer(model, y, method=ppl.NUTS(**OPTIONS), key=3,
                                                      checkpoint=f"{workdir}/ckpt-{pid}"))
    out["uneven_error"] = error(lambda: ppl.infer(model, y, method=ppl.NUTS(**dict(OPTIONS, num_chains=3)), key=3))
    out["other_data_error"] = error(lambda: ppl.infer(model, y + pid, method=ppl.NUTS(**OPTIONS), key=3))
    print(json.dumps(out))
""")

FOUR_DEVICES = _HEADER + textwrap.dedent("""
    out = {"devices": jax.device_count(), "groups": ppl.NUTS(num_chains=4)._groups(),
           "sharding_devices": len(distributed.chain_sharding(4).device_set)}
    out["nuts"] = draws(ppl.NUTS(**OPTIONS))
    out["hmc"] = draws(ppl.HMC(**OPTIONS))
    out["mh"] = draws(ppl.MH(**OPTIONS))
    out["held"] = held
    print(json.dumps(out))
""")


def model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, sigma), y)


Y = np.random.default_rng(0).normal(1.0, 2.0, 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ctrl_c_on():
    """In the child: SIGINT at its default, so Python installs its Ctrl-C handler even when
    the tests run in a background job (whose children start with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(script, args, tmp_path, name, devices):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), PPL_COMPILE_CACHE="0", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, stdout=out,
                                stderr=err, preexec_fn=_ctrl_c_on)


def _finish(procs, tmp_path, names, seconds=CHILD_SECONDS):
    """Wait for every child until the deadline; kill them all if it passes or one fails."""
    deadline = time.monotonic() + seconds
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for p, name in zip(procs, names):
        err = (tmp_path / f"{name}.err").read_text()
        assert p.returncode == 0, f"{name} exited with {p.returncode} (killed at the deadline if -9):\n{err[-3000:]}"
        results.append(json.loads((tmp_path / f"{name}.out").read_text().strip().splitlines()[-1]))
    return results


def _single_process_draws(names, options=None):
    options = options or {}
    return {name: ppl.infer(model, jnp.asarray(Y), method=METHODS.get(name, ppl.MH)(**options.get(name, OPTIONS)),
                            key=KEY)
            for name in names}


def _same_draws(got, reference, name):
    """`got`'s draws are the first of `reference`'s (all of them unless it was interrupted)."""
    for site in ("mu", "sigma"):
        draws = np.asarray(got[site])
        np.testing.assert_allclose(draws, reference.samples[site][:, :draws.shape[1]], rtol=0, atol=1e-9,
                                   err_msg=f"{name} {site}")


@pytest.mark.timeout(280)
@pytest.mark.filterwarnings("ignore:.*r_hat > 1.01")  # short runs: only the draws' identity is tested
def test_two_processes_each_run_half_the_chains_and_get_the_draws_of_one(tmp_path, x64):
    port = _free_port()
    names = ["process0", "process1"]
    procs = [_start(TWO_PROCESSES, [i, port, tmp_path], tmp_path, names[i], devices=1) for i in range(2)]
    try:
        reference = _single_process_draws(["nuts", "hmc"], {"hmc": HMC_OPTIONS})  # while the children run
    except BaseException:
        _finish(procs, tmp_path, names, seconds=0)
        raise
    results = _finish(procs, tmp_path, names)
    for pid, out in enumerate(results):
        assert (out["processes"], out["devices"], out["local_devices"]) == (2, 2, 1)
        # "auto" on several devices: one vectorised program, chains sharded over every device.
        assert out["groups"] == 1 and out["sharding_devices"] == 2
        assert out["local_chains"] == [2 * pid, 2 * pid + 1]
        # Every output each process held was a global array of which it had its own chains.
        assert out["held"] and all(h == [False, [2 * pid]] for h in out["held"]), out["held"]
        # Every process gets every chain: the draws of one process.
        assert np.shape(out["nuts"]["mu"]) == (4, OPTIONS["num_samples"]) and not out["nuts"]["interrupted"]
        _same_draws(out["nuts"], reference["nuts"], f"process {pid} nuts")
        # Ctrl-C in process 1 after 13 chunks of 25 (300 warmup): both stop there, 25 draws each.
        assert out["hmc"]["interrupted"] and np.shape(out["hmc"]["mu"]) == (4, 13 * 25 - 300)
        _same_draws(out["hmc"], reference["hmc"], f"process {pid} hmc")
        assert out["agree"] == [10, 0]  # the shortest chunk asked for; one process stopping stops all
        assert "multi-process" in out["checkpoint_error"] and "drop checkpoint=" in out["checkpoint_error"]
        assert "num_chains=3" in out["uneven_error"] and "multiple of 2" in out["uneven_error"]
        assert "processes [1]" in out["other_data_error"]
    assert not any((tmp_path / f"ckpt-{pid}").exists() for pid in range(2))


@pytest.mark.timeout(280)
@pytest.mark.filterwarnings("ignore:.*r_hat > 1.01")  # short runs: only the draws' identity is tested
def test_four_devices_in_one_process_give_the_draws_of_one(tmp_path, x64):
    procs = [_start(FOUR_DEVICES, [], tmp_path, "four", devices=4)]
    try:
        reference = _single_process_draws(["nuts", "hmc", "mh"])
    except BaseException:
        _finish(procs, tmp_path, ["four"], seconds=0)
        raise
    (out,) = _finish(procs, tmp_path, ["four"])
    assert out["devices"] == 4 and out["groups"] == 1 and out["sharding_devices"] == 4
    # One device's chain per output shard, all four addressable here.
    assert out["held"] and all(h == [True, [0, 1, 2, 3]] for h in out["held"]), out["held"]
    for name in ("nuts", "hmc", "mh"):
        _same_draws(out[name], reference[name], name)


def test_processes_agree_on_each_chunk_and_on_stopping():
    # The chunk loop asks `agree` before every chunk: the length it returns is run, and 0
    # stops the run (another process was interrupted), reported as an interruption.
    asked, ran = [], []

    def agree(n, stop):
        asked.append((n, stop))
        return 0 if len(asked) == 4 else min(n, 3)

    def execute(g, state, rows):
        ran.append(rows)
        return state + rows, None

    group = chunks.Group(state=0, start=0, stop=100)
    interrupted = chunks.run(execute, [group], lambda g, start, n: n, 50, lambda c: None,
                             concurrent=False, chunk_size=5, agree=agree)
    assert interrupted is True
    assert ran == [3, 3, 3] and asked == [(5, False)] * 4
