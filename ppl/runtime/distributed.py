"""Chains over devices and processes: the chain axis's sharding, global inputs, gathered outputs.

JAX is the distributed engine; nothing here moves data by itself. With several devices
(`jax.devices()`: every device of every process once `jax.distributed.initialize` has run)
the chain axis of a run is one :class:`jax.sharding.NamedSharding` over a 1-D mesh of all of
them (axis ``"chain"``); everything else a program takes (the key, the data, a chunk's plan)
is replicated over the same mesh. Each process computes its own devices' chains; the chunk
program is one SPMD program that every process runs in step.

The contract of a multi-process run (``jax.process_count() > 1``), as in JAX's own multi-host
programs: every process calls ``ppl.infer`` with the same model, data, method and key, and
every process gets the full `Result` (every chain): after each chunk the draws and the chains'
state are gathered to every process (a jitted copy replicated on every device, JAX's
all-gather). The processes agree on each chunk's length and on stopping (Ctrl-C in any
process stops all of them after the chunk in flight), so none waits for ever in a
collective. Checkpoints are refused (`ppl.mcmc.chains`): each process would write its own.
On CPU the processes' collectives use Gloo (``jax_cpu_collectives_implementation``, jax
0.10's default).

Example (two processes on one machine; the same script in each, ``i`` = 0 or 1)::

    import jax, ppl
    jax.distributed.initialize(coordinator_address="localhost:1234", num_processes=2, process_id=i)
    r = ppl.infer(model, data, method=ppl.NUTS(num_chains=8), key=0)   # 4 chains computed here
    r.samples["mu"].shape                                              # (8, 1000) in each process
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def processes() -> int:
    """How many processes run this program together (1 without `jax.distributed`)."""
    return jax.process_count()


def chain_sharding(num_chains: int):
    """A NamedSharding of a leading chain axis over all (global) devices, or None on one
    device, or when one process has several devices that do not divide the chains (the
    chains then run on the default device).

    Raises:
      ValueError: in a multi-process run whose devices do not divide `num_chains` (every
        process must hold the same number of chains).
    """
    devices = jax.devices()
    if len(devices) < 2:
        return None
    if num_chains % len(devices):
        if processes() > 1:
            raise ValueError(
                f"num_chains={num_chains} cannot be split evenly over the {len(devices)} devices of this "
                f"{processes()}-process jax.distributed run; use a multiple of {len(devices)} "
                f"(e.g. num_chains={len(devices) * max(1, round(num_chains / len(devices)))}).")
        return None
    mesh = Mesh(np.array(devices), ("chain",))
    return NamedSharding(mesh, PartitionSpec("chain"))


def constrain(tree, sharding):
    """Inside a traced program: the leaves' leading axis laid out as `sharding` (no-op for None)."""
    if sharding is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def per_device(local, sharding):
    """``map(f, *a)``: `local`'s mapping of ``f`` over a chain axis (``vmap``, or one chain
    after another), run by each device on its own chains (``jax.shard_map``). Each device's
    loops (a NUTS tree, a start-point search) then end when its own chains are done, with no
    traffic between devices or processes while they run; under plain sharding a vectorised
    loop's test reduces over every chain, a collective at every iteration. `local` must not
    reduce across chains (its reductions would see one device's chains only).

    ``check_vma=False``: the samplers' code starts values afresh inside branches (a new
    mass-matrix estimate where a window closes) that JAX's per-device typing would call
    device-invariant beside device-varying ones; nothing here communicates, so the check
    has nothing to protect."""
    def mapped(f, *a):
        return jax.shard_map(lambda *x: local(f, *x), mesh=sharding.mesh, in_specs=sharding.spec,
                             out_specs=sharding.spec, check_vma=False)(*a)
    return mapped


def over_chains(tree, sharding):
    """Host or device arrays with a leading chain axis (every chain, the same values in every
    process) as global arrays sharded by `sharding`: each process keeps its own chains."""
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def replicated(tree, sharding):
    """Host or device arrays (the same values in every process) as global arrays replicated
    over `sharding`'s mesh."""
    everywhere = sharding.update(spec=PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, everywhere), tree)


def to_host(tree, sharding=None):
    """A program's outputs (global arrays over `sharding`'s mesh) as NumPy arrays holding
    every chain, in every process: in a multi-process run, one program that replicates every
    leaf on every device (JAX's all-gather; `multihost_utils.process_allgather` does the same
    a leaf at a time), whose local copy is then read."""
    if processes() == 1 or sharding is None:
        return jax.device_get(tree)
    everywhere = _gather(sharding.update(spec=PartitionSpec()))(tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), everywhere)


@functools.lru_cache(maxsize=8)
def _gather(everywhere):
    return jax.jit(lambda tree: tree, out_shardings=everywhere)


def agree_on_chunk(n: int, stop: bool) -> int:
    """The length of the next chunk that every process runs: the shortest any process asks
    for, or 0 (all stop) when any process was asked to stop. A collective: every process
    calls it once before each chunk."""
    if processes() == 1:
        return 0 if stop else n
    from jax.experimental import multihost_utils

    both = np.asarray(multihost_utils.process_allgather(np.array([n, int(stop)], np.int32)))
    return 0 if both[:, 1].any() else int(both[:, 0].min())


def require_same_call(description: dict, what: str) -> None:
    """Check that every process of a multi-process run makes the same call (`description`:
    JSON-serialisable, e.g. model, data hash, options and key); a difference would leave the
    processes running different programs, each waiting for the others for ever.

    Raises:
      ValueError: naming the processes whose call differs from process 0's.
    """
    if processes() == 1:
        return
    from jax.experimental import multihost_utils

    digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=repr).encode()).digest()
    every = np.asarray(multihost_utils.process_allgather(np.frombuffer(digest, np.uint8)))
    differ = [p for p in range(every.shape[0]) if not np.array_equal(every[p], every[0])]
    if differ:
        raise ValueError(
            f"{what}: processes {differ} of this jax.distributed run were called with another model, data, "
            f"method options or key than process 0; every process must make the same ppl.infer call "
            f"(each then computes its share of the chains).")


class Placement(NamedTuple):
    """Where a run's program inputs go: ``sharding`` of the chain axis over every device, or
    None (inputs are passed as they are, to the default device)."""

    sharding: Any

    def chains(self, tree):
        """Arrays with a leading chain axis, laid out over the devices."""
        return tree if self.sharding is None else over_chains(tree, self.sharding)

    def everywhere(self, tree):
        """Arrays every device needs whole (the key, the data, a chunk's plan)."""
        return tree if self.sharding is None else replicated(tree, self.sharding)

    def host(self, tree):
        """A program's outputs as NumPy arrays of every chain, in every process."""
        return to_host(tree, self.sharding)
