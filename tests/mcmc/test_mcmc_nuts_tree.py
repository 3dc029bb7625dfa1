"""NUTS trajectory construction against a literal transcription of Stan's recursive NUTS.

The extent of a NUTS trajectory (leapfrog steps, tree depth, divergence) is a deterministic
function of the initial point, the momentum and the doubling directions: the multinomial
draws never change where it stops. So the iterative, vectorised implementation must
reproduce, exactly, the leapfrog count and depth of Stan's ``base_nuts::transition`` /
``build_tree`` (generalised criterion with the two extra checks across merged subtrees),
transcribed below in numpy with Python recursion. Run in float64 so that no criterion is
decided differently by rounding.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl.mcmc import nuts


def _stan_extent(value_and_grad, x0, p0, eps, imm, direction_bits, max_depth, max_delta=1000.0):
    """(n_leapfrog, depth, divergent) of Stan's NUTS transition, diagonal metric."""
    counters = {"n": 0, "divergent": False}

    def hamiltonian(z):
        return -z[2] + 0.5 * np.dot(z[1], imm * z[1])

    def leapfrog(z, e):
        x, p, _, g = z
        p = p + 0.5 * e * g
        x = x + e * imm * p
        ld, g = value_and_grad(x)
        p = p + 0.5 * e * g
        return (x, p, ld, g)

    def crit(ps_minus, ps_plus, rho):
        return np.dot(ps_plus, rho) > 0 and np.dot(ps_minus, rho) > 0

    h0 = hamiltonian((x0, p0, value_and_grad(x0)[0], None))
    ld0, g0 = value_and_grad(x0)
    z0 = (x0, p0, ld0, g0)

    def build_tree(depth, z, sign):
        if depth == 0:
            z = leapfrog(z, sign * eps)
            counters["n"] += 1
            h = hamiltonian(z)
            if np.isnan(h):
                h = np.inf
            if h - h0 > max_delta:
                counters["divergent"] = True
            p = z[1]
            return not counters["divergent"], z, (p, imm * p, p, imm * p, p)
        ok, z, ends = build_tree(depth - 1, z, sign)
        if not ok:
            return False, z, None
        p_beg, ps_beg, p_ie, ps_ie, rho_i = ends
        ok, z, ends = build_tree(depth - 1, z, sign)
        if not ok:
            return False, z, None
        p_fb, ps_fb, p_end, ps_end, rho_f = ends
        rho = rho_i + rho_f
        persist = crit(ps_beg, ps_end, rho)
        persist &= crit(ps_beg, ps_fb, rho_i + p_fb)
        persist &= crit(ps_ie, ps_end, rho_f + p_ie)
        return persist, z, (p_beg, ps_beg, p_end, ps_end, rho)

    z_fwd = z_bck = z0
    p_ff = p_fb = p_bf = p_bb = p0
    ps_ff = ps_fb = ps_bf = ps_bb = imm * p0
    rho = p0.copy()
    depth = 0
    while depth < max_depth:
        if (direction_bits >> depth) & 1:
            rho_bck, p_bf, ps_bf = rho, p_ff, ps_ff
            ok, z_fwd, ends = build_tree(depth, z_fwd, 1)
            if not ok:
                break
            p_fb, ps_fb, p_ff, ps_ff, rho_fwd = ends
        else:
            rho_fwd, p_fb, ps_fb = rho, p_bb, ps_bb
            ok, z_bck, ends = build_tree(depth, z_bck, -1)
            if not ok:
                break
            p_bf, ps_bf, p_bb, ps_bb, rho_bck = ends
        depth += 1
        rho = rho_bck + rho_fwd
        persist = crit(ps_bb, ps_ff, rho)
        persist &= crit(ps_bb, ps_fb, rho_bck + p_fb)
        persist &= crit(ps_bf, ps_ff, rho_fwd + p_bf)
        if not persist:
            break
    return counters["n"], depth, counters["divergent"]


def _targets():
    scales = np.array([0.5, 1.0, 3.0])

    def gaussian(x):
        return -0.5 * jnp.sum((x / scales) ** 2)

    def funnel(x):  # Neal's funnel: divergences for large steps
        return -0.5 * x[0] ** 2 / 9.0 - 0.5 * jnp.sum(x[1:] ** 2) * jnp.exp(-x[0]) - x[0]

    def banana(x):
        return -0.5 * (x[0] ** 2 / 4.0 + (x[1] - 0.5 * x[0] ** 2) ** 2 + x[2] ** 2)

    return {"gaussian": gaussian, "funnel": funnel, "banana": banana}


@pytest.mark.parametrize("restricted", [False, True], ids=["all-levels", "fewest-levels"])
@pytest.mark.parametrize("name", ["gaussian", "funnel", "banana"])
def test_extent_matches_stan_recursive_nuts(name, restricted, monkeypatch):
    """Leapfrog count, tree depth and divergence equal Stan's on 60 random trajectories, with
    the U-turn checks over every stack level and over the fewest that hold a leaf's merges
    (`nuts.check_levels`, used from RESTRICT_MIN_DIM coordinates: forced here for 3)."""
    monkeypatch.setattr(nuts, "RESTRICT_MIN_DIM", 0 if restricted else 10**9)
    logdensity = _targets()[name]
    max_depth = 7
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        imm = np.array([1.0, 0.5, 2.0])

        @jax.jit
        def extent(x0, p0, eps, bits):
            state = nuts.init(x0, logdensity)
            c = nuts._trajectory(jnp.zeros(2, jnp.uint32), state, p0, bits, logdensity, eps,
                                 jnp.asarray(imm), max_depth, 1000.0)
            return c.count.steps, c.count.depth, c.count.diverging

        vg = jax.jit(jax.value_and_grad(logdensity))
        value_and_grad = lambda x: tuple(np.asarray(a) for a in vg(x))
        mismatches, depths, divergent = [], [], []
        for trial in range(60):
            x0 = rng.normal(size=3) * (0.5 if name == "funnel" else 1.5)
            p0 = rng.normal(size=3) / np.sqrt(imm)
            eps = float(np.exp(rng.uniform(np.log(0.02), np.log(2.5))))
            bits = int(rng.integers(0, 2 ** 20))
            ours = tuple(int(a) for a in extent(x0, p0, eps, np.uint32(bits)))
            ref = _stan_extent(value_and_grad, x0, p0, eps, imm, bits, max_depth)
            ref = (ref[0], ref[1], int(ref[2]))
            depths.append(ref[1])
            divergent.append(ref[2])
            if ours != ref:
                mismatches.append((trial, ours, ref))
        assert not mismatches, mismatches
        assert len(set(depths)) >= 3  # the trials exercise several depths
        assert max(depths) == max_depth or name != "gaussian"  # and the depth cap
        assert any(divergent) or name != "funnel"  # and divergences
