"""Discrete sites summed out of the log density (`ppl.compile.marginal`, issue 17 §1), and drawn
back (`ppl.infer_discrete`). Exact checks against brute-force sums over every joint value;
statistical checks state their tolerance from Monte Carlo error and use fixed keys."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.compile.logdensity import compile as compile_model
from ppl.compile.marginal import marginalize


def joint_values(sites):
    """Every joint value of the discrete `sites` ((name, shape, K) triples): site -> array
    with a leading axis over the joint values."""
    sizes = [int(np.prod(shape)) for _, shape, _ in sites]
    rows = np.array(list(itertools.product(*[range(k) for (_, _, k), n in zip(sites, sizes) for _ in range(n)])))
    out, i = {}, 0
    for (name, shape, _), n in zip(sites, sizes):
        out[name] = jnp.asarray(rows[:, i:i + n].reshape((len(rows),) + tuple(shape)), jnp.int32)
        i += n
    return out


def joint_log_probs(ld, m, zc, sites):
    """`(values, log joint at each joint value)`, one vectorised evaluation."""
    values = joint_values(sites)
    return values, jax.jit(jax.vmap(lambda d: ld.log_prob(m.embed(zc, d))))(values)


def brute_force(ld, m, zc, sites):
    """log sum over every joint value of the discrete `sites`."""
    return float(jax.nn.logsumexp(joint_log_probs(ld, m, zc, sites)[1]))


def mixture(y):
    w = ppl.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0).expand([3]).to_event(1))
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(w))
        ppl.deterministic("m", mu[z])
        ppl.observe("y", dist.Normal(mu[z], 1.0), y)


def hmm(y):
    p = ppl.sample("p", dist.Beta(2.0, 2.0))
    trans = jnp.array([[p, 1 - p], [1 - p, p]])
    x = 0
    for t in range(y.shape[0]):
        x = ppl.sample(f"x{t}", dist.Categorical(trans[x]))
        ppl.observe(f"y{t}", dist.Normal(2.0 * x, 1.0), y[t])


def hmm_scan(y):  # the same chain as `hmm`, written with ppl.scan
    p = ppl.sample("p", dist.Beta(2.0, 2.0))
    trans = jnp.array([[p, 1 - p], [1 - p, p]])

    def step(x, y_t):
        x = ppl.sample("x", dist.Categorical(trans[x]))
        ppl.observe("y", dist.Normal(2.0 * x, 1.0), y_t)
        return x, None

    ppl.scan(step, 0, y)


def hmm_scan_plate(ys):  # two sequences (columns), independent given p
    p = ppl.sample("p", dist.Beta(2.0, 2.0))
    trans = jnp.array([[p, 1 - p], [1 - p, p]])
    with ppl.plate("sequences", ys.shape[1]):
        def step(x, y_t):
            x = ppl.sample("x", dist.Categorical(trans[x]))
            ppl.observe("y", dist.Normal(2.0 * x, 1.0), y_t)
            return x, None

        ppl.scan(step, jnp.zeros(ys.shape[1], jnp.result_type(int)), ys)


def survival_scan(ys):  # capture-recapture: a continuous site per step, before the plate
    rho = ppl.sample("rho", dist.Beta(2.0, 2.0))

    def step(z, y_t):
        phi = ppl.sample("phi", dist.Beta(3.0, 1.0))  # per-step survival, outside the plate
        with ppl.plate("animals", ys.shape[1]):
            z = ppl.sample("z", dist.Bernoulli(jnp.clip(phi * z, 1e-6, 1 - 1e-6)))
            ppl.observe("y", dist.Bernoulli(jnp.clip(rho * z, 1e-6, 1 - 1e-6)), y_t)
        return z, None

    ppl.scan(step, jnp.ones(ys.shape[1], jnp.result_type(int)), ys)


def factorial_scan(ys):  # two interacting chains in one scan (hmm_enum's models 3 and 4), per sequence
    p = ppl.sample("p", dist.Beta(2.0, 2.0))

    def step(carry, y_t):
        x_prev, w_prev = carry
        with ppl.plate("sequences", ys.shape[1]):
            stay = jnp.where((x_prev == 0)[..., None], jnp.stack([p, 1 - p]), jnp.stack([1 - p, p]))
            x = ppl.sample("x", dist.Categorical(stay))
            w = ppl.sample("w", dist.Categorical(jnp.where((w_prev == x)[..., None], jnp.array([0.6, 0.3, 0.1]),
                                                           jnp.array([0.2, 0.3, 0.5]))))
            ppl.observe("y", dist.Normal(2.0 * x + w, 1.0), y_t)
        return (x, w), None

    zeros = jnp.zeros(ys.shape[1], jnp.result_type(int))
    ppl.scan(step, (zeros, zeros), ys)


def second_order_scan(y, reverse=False):  # x_t depends on x_{t-1} and x_{t-2} (hmm_enum's model 6)
    p = ppl.sample("p", dist.Beta(2.0, 2.0))

    def step(carry, y_t):
        a, b = carry
        x = ppl.sample("x", dist.Categorical(jnp.where(a == b, jnp.stack([p, 1 - p]), jnp.stack([1 - p, p]))))
        ppl.observe("y", dist.Normal(2.0 * x, 1.0), y_t)
        return (b, x), None

    ppl.scan(step, (0, 0), y, history=2, reverse=reverse)


def second_order_scan_reversed(y):  # the chain runs from the last step to the first
    second_order_scan(y, reverse=True)


def factor_scan(y):  # the body scores each step with ppl.factor (a term with no distribution)
    p = ppl.sample("p", dist.Beta(2.0, 2.0))

    def step(carry, y_t):
        x = ppl.sample("x", dist.Bernoulli(jnp.where(carry == 1, p, 1 - p)))
        ppl.factor("f", -0.5 * (y_t - 2.0 * x) ** 2)
        return x, None

    ppl.scan(step, 0, y)


def independent_steps_scan(y):  # history=0: each step's site on its own
    p = ppl.sample("p", dist.Beta(2.0, 2.0))

    def step(carry, y_t):
        x = ppl.sample("x", dist.Bernoulli(p))
        ppl.observe("y", dist.Normal(2.0 * x, 1.0), y_t)
        return carry, None

    ppl.scan(step, 0, y, history=0)


def two_levels(y):  # a global site, and per-item sites whose prior depends on it
    q = ppl.sample("q", dist.Beta(1.0, 1.0))
    g = ppl.sample("g", dist.Bernoulli(q))
    with ppl.plate("i", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(jnp.where(g == 1, 0.9, 0.2)))
        ppl.observe("y", dist.Normal(3.0 * z + g, 1.0), y)


def coupled(y):  # no plate makes the elements of z independent: 2^3 joint values
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    z = ppl.sample("z", dist.Bernoulli(0.3).expand([3]).to_event(1))
    ppl.observe("y", dist.Normal(mu + jnp.sum(z), 1.0), y)


def joint_in_plate(y):  # two interacting sites per element, summed jointly per element
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("n", y.shape[0]):
        a = ppl.sample("a", dist.Bernoulli(0.4))
        b = ppl.sample("b", dist.Categorical(jnp.array([0.2, 0.3, 0.5])))
        ppl.observe("y", dist.Normal(mu + a * b, 1.0), y)


CASES = [
    (mixture, jnp.array([-3.0, -2.5, 0.1, 4.0]), [("z", (4,), 3)], "summed over 3 joint values"),
    (hmm, jnp.array([0.1, 2.2, 1.9, -0.3, 0.2]), [(f"x{t}", (), 2) for t in range(5)], "forward algorithm"),
    (hmm_scan, jnp.array([0.1, 2.2, 1.9, -0.3, 0.2]), [("x", (5,), 2)], "5 steps of x in ppl.scan"),
    (hmm_scan_plate, jnp.array([[0.1, 2.0], [2.2, 1.9], [1.9, -0.3], [-0.3, 0.2]]), [("x", (4, 2), 2)],
     "4 steps of x in ppl.scan (2 values), vectorised over plate(s) ['sequences']"),
    (survival_scan, jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), [("z", (3, 2), 2)],
     "3 steps of z in ppl.scan"),
    (factorial_scan, jnp.array([[0.1, 2.0], [3.9, 1.1], [2.2, -0.3]]), [("x", (3, 2), 2), ("w", (3, 2), 3)],
     "3 steps of x, w in ppl.scan (6 values)"),
    (second_order_scan, jnp.array([0.1, 2.2, 1.9, -0.3, 0.2]), [("x", (5,), 2)], "(2 values, order 2)"),
    (independent_steps_scan, jnp.array([0.1, 2.2, 1.9]), [("x", (3,), 2)], "(2 values, order 0)"),
    (second_order_scan_reversed, jnp.array([0.1, 2.2, 1.9, -0.3, 0.2]), [("x", (5,), 2)],
     "(2 values, order 2), in reverse"),
    (factor_scan, jnp.array([0.1, 2.2, 1.9, -0.3]), [("x", (4,), 2)], "4 steps of x in ppl.scan"),
    (two_levels, jnp.array([0.1, 3.2, 2.9, 0.0]), [("g", (), 2), ("z", (4,), 2)], "two plate levels"),
    (coupled, jnp.array(1.5), [("z", (3,), 2)], "summed over 8 joint values"),
    (joint_in_plate, jnp.array([0.3, 1.9, -0.4]), [("a", (3,), 2), ("b", (3,), 3)], "summed over 6 joint values"),
]


@pytest.mark.parametrize("model,y,sites,plan", CASES, ids=[c[0].__name__ for c in CASES])
def test_marginal_equals_the_brute_force_sum_and_its_gradient_is_right(model, y, sites, plan):
    ld = compile_model(model, y)
    m = marginalize(ld)
    assert plan in " ".join(m.plan.describe())
    assert [lat.name for lat in m.spec.latents] == [lat.name for lat in ld.spec.continuous]
    zc = jax.random.normal(jax.random.PRNGKey(3), (m.dim,)) * 0.5
    log_prob = jax.jit(m.log_prob)
    np.testing.assert_allclose(float(log_prob(zc)), brute_force(ld, m, zc, sites), rtol=2e-5)
    eps = 1e-2
    g = jax.jit(jax.grad(m.log_prob))(zc)
    steps = eps * jnp.eye(m.dim)  # central differences along every coordinate, in one program
    fd = (jax.jit(jax.vmap(m.log_prob))(zc + steps) - jax.jit(jax.vmap(m.log_prob))(zc - steps)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=2e-2, atol=2e-2)


def test_most_probable_values_are_the_brute_force_argmax():
    """temperature 0: the Viterbi path of the HMMs (of order 1 and 2, of one site and two per
    step), and the per-element modes of the two-level model (given the continuous values),
    equal the argmax over every joint value."""
    cases = {c[0].__name__: c for c in CASES}
    names = ["hmm", "hmm_scan_plate", "factorial_scan", "second_order_scan", "second_order_scan_reversed",
             "independent_steps_scan", "two_levels"]
    for model, y, sites, _ in [cases[n] for n in names]:
        ld = compile_model(model, y)
        m = marginalize(ld)
        zc = jnp.array([0.4])
        values, lps = joint_log_probs(ld, m, zc, sites)
        best = {name: v[int(jnp.argmax(lps))] for name, v in values.items()}
        got = jax.jit(lambda z, k: m.draw_discrete(z, k, temperature=0))(zc, jax.random.PRNGKey(0))
        for name, v in best.items():
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(v), err_msg=name)


@pytest.mark.parametrize("name", ["two_levels", "factorial_scan", "second_order_scan", "second_order_scan_reversed"])
def test_conditional_draws_have_the_exact_frequencies(name):
    """temperature 1: 4000 draws of the discrete sites given the continuous ones (the
    two-level model's (g, z); the forward-filtering backward-sampling of two chains in one
    scan, and of a second-order chain, also run in reverse); each joint value's frequency is within 4.5 binomial
    sds (+ 1e-3, a value drawn a few times) of its exact conditional probability."""
    model, y, sites, _ = {c[0].__name__: c for c in CASES}[name]
    ld = compile_model(model, y)
    m = marginalize(ld)
    zc = jnp.array([0.4])
    draws = jax.jit(jax.vmap(lambda k: m.draw_discrete(zc, k)))(jax.random.split(jax.random.PRNGKey(1), 4000))
    keys = np.concatenate([np.asarray(draws[n]).reshape(4000, -1) for n, _, _ in sites], axis=1)
    values, lps = joint_log_probs(ld, m, zc, sites)
    probs = np.exp(np.asarray(lps - jax.nn.logsumexp(lps)))
    joint = np.concatenate([np.asarray(values[n]).reshape(len(probs), -1) for n, _, _ in sites], axis=1)
    assert probs.max() > 0.01  # some values are drawn often: the test can fail
    for row, p in zip(joint, probs):
        freq = np.mean(np.all(keys == row, axis=1))
        assert abs(freq - p) <= 4.5 * np.sqrt(p * (1 - p) / len(keys)) + 1e-3, (row, freq, p)


def asymmetric_mixture(y):
    """A two-component mixture whose components the priors tell apart (no label switching)."""
    w = ppl.sample("w", dist.Beta(2.0, 2.0))
    lo = ppl.sample("lo", dist.Normal(-2.0, 0.5))
    hi = ppl.sample("hi", dist.Normal(2.0, 0.5))
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(w))
        ppl.observe("y", dist.Normal(jnp.where(z == 1, hi, lo), 1.0), y)


def test_nuts_with_summed_out_sites_agrees_with_gibbs():
    """NUTS on the marginal (the discrete sites drawn afterwards) and Gibbs (enumerated
    conditionals) target the same posterior: every mean, z's included, agrees within 5
    Monte Carlo standard errors of the difference (ESS from each run)."""
    y = jnp.concatenate([jax.random.normal(jax.random.PRNGKey(0), (12,)) - 2.0,
                         jax.random.normal(jax.random.PRNGKey(1), (8,)) + 2.0])
    opts = dict(num_warmup=300, num_samples=400, num_chains=2)
    a = ppl.infer(asymmetric_mixture, y, method=ppl.NUTS(**opts), key=0)
    b = ppl.infer(asymmetric_mixture, y, method=ppl.Gibbs(**opts), key=1)
    assert a.samples["z"].shape == (2, 400, 20) and a.samples["z"].dtype == b.samples["z"].dtype
    assert "vectorised over plate(s) ['n']" in a.diagnostics["summed_out"][0]
    sa, sb = a.summary(), b.summary()
    for row in ["w", "lo", "hi", "z[0]", "z[15]"]:
        mcse = np.hypot(sa.loc[row, "sd"] / np.sqrt(max(sa.loc[row, "ess_bulk"], 1)),
                        sb.loc[row, "sd"] / np.sqrt(max(sb.loc[row, "ess_bulk"], 1)))
        assert abs(sa.loc[row, "mean"] - sb.loc[row, "mean"]) < 5 * mcse + 1e-6, row


def test_map_gives_the_most_probable_discrete_values_and_infer_discrete_redraws():
    y = jnp.array([-2.1, -1.8, 2.2, 1.9, 2.4])
    r = ppl.infer(asymmetric_mixture, y, method="map", key=0)
    np.testing.assert_array_equal(np.asarray(r.params["z"]), [0, 0, 1, 1, 1])
    n = ppl.infer(asymmetric_mixture, y, method=ppl.NUTS(num_warmup=100, num_samples=100, num_chains=1), key=0)
    modes = ppl.infer_discrete(n, key=0, temperature=0)
    assert np.all(np.asarray(modes.samples["z"])[..., 2:] == 1) and np.all(np.asarray(modes.samples["z"])[..., :2] == 0)
    again = ppl.infer_discrete(n, key=0)
    np.testing.assert_array_equal(np.asarray(again.samples["z"]), np.asarray(ppl.infer_discrete(n, key=0).samples["z"]))
    np.testing.assert_array_equal(np.asarray(again.samples["lo"]), np.asarray(n.samples["lo"]))


def test_discrete_draws_use_each_draws_own_key_and_one_compiled_program():
    """Draw (c, s) of the discrete sites uses fold_in(fold_in(fold_in(key, DISCRETE_STREAM),
    c), s) (`ppl.method.discrete`), so it is the one-draw computation with that key; the
    program is compiled once per model structure and shapes, and reused."""
    from ppl.method import discrete

    y = jnp.array([-2.1, -1.8, 2.2, 1.9, 2.4])
    m = marginalize(compile_model(asymmetric_mixture, y))
    # lo and hi close together: each z is a coin of about w, so the draws depend on the key
    samples = {"w": jnp.linspace(0.3, 0.7, 6).reshape(2, 3), "lo": -0.1 + jnp.zeros((2, 3)),
               "hi": 0.1 + jnp.linspace(-0.05, 0.05, 6).reshape(2, 3)}
    key = jax.random.PRNGKey(7)
    out = discrete.discrete_draws(m, samples, key)
    flat = {k: v.reshape(6) for k, v in samples.items()}
    program = discrete._program(m, flat, key, (2, 3), 1)
    assert discrete._program(m, {k: v + 0.01 for k, v in flat.items()}, key, (2, 3), 1) is program
    assert discrete._program(m, flat, key, (2, 3), 0) is not program
    base = jax.random.fold_in(key, discrete.DISCRETE_STREAM)
    for c, s in itertools.product(range(2), range(3)):
        k = jax.random.fold_in(jax.random.fold_in(base, c), s)
        one = m.complete(m.unconstrain({n: v[c, s] for n, v in samples.items()}), k)
        np.testing.assert_array_equal(out["z"][c, s], np.asarray(one["z"]))
        np.testing.assert_allclose(out["w"][c, s], samples["w"][c, s], rtol=1e-6)
    assert 0 < np.mean(out["z"]) < 1


def test_sites_that_cannot_be_summed_are_refused_naming_them():
    def counts(y):
        k = ppl.sample("k", dist.Poisson(3.0))
        ppl.observe("y", dist.Normal(1.0 * k, 1.0), y)

    with pytest.raises(ValueError, match=r"method 'hmc'.*'k' has a Poisson.*infinite.*gibbs"):
        ppl.infer(counts, jnp.array(1.0), method="hmc")

    def many(y):
        z = ppl.sample("z", dist.Bernoulli(0.5).expand([12]).to_event(1))
        ppl.observe("y", dist.Normal(jnp.sum(z), 1.0), y)

    with pytest.raises(ValueError, match=r"\['z'\].*4096 joint values.*ppl.plate.*gibbs"):
        ppl.infer(many, jnp.array(1.0), method="map")

    def long_memory(y):  # history=3 over two sites of 2 and 3 values: 6^4 window values
        def step(carry, y_t):
            x = ppl.sample("x", dist.Categorical(jnp.where(carry[0] == carry[2], jnp.array([0.7, 0.3]),
                                                           jnp.array([0.3, 0.7]))))
            w = ppl.sample("w", dist.Categorical(jnp.array([0.2, 0.3, 0.5])))
            ppl.observe("y", dist.Normal(2.0 * x + w, 1.0), y_t)  # x and w interact here
            return (carry[1], x, w), None
        ppl.scan(step, (0, 0, 0), y, history=3)

    with pytest.raises(ValueError, match=r"\['x', 'w'\] inside ppl.scan.*history=3.*1296 values.*Python for loop"):
        ppl.infer(long_memory, jnp.zeros(5), method="nuts")

    def global_switch(y):  # a discrete site outside the scan that its steps read
        g = ppl.sample("g", dist.Bernoulli(0.5))

        def step(carry, y_t):
            x = ppl.sample("x", dist.Categorical(jnp.array([[0.9, 0.1], [0.1, 0.9]])[carry]))
            ppl.observe("y", dist.Normal(2.0 * x + g, 1.0), y_t)
            return x, None
        ppl.scan(step, 0, y)

    with pytest.raises(ValueError, match=r"\['g', 'x'\] inside ppl.scan.*not all sites of one ppl.scan"):
        ppl.infer(global_switch, jnp.zeros(3), method="nuts")
    with pytest.raises(ValueError, match=r"gibbs: discrete latent site 'x' is inside ppl.scan"):
        ppl.infer(hmm_scan, jnp.zeros(3), method="gibbs")


def test_scans_that_break_the_forward_algorithms_assumptions_are_refused():
    """The forward algorithm over a scan assumes that a step reads discrete values of at most
    `history` earlier steps, and that the plates in the body make their elements
    independent. A probe (one change of each site at the scan's first step, at a random
    continuous point) finds a body that breaks either, where the sum would be wrong without
    a word (measured before the probe: a carry that accumulates x with history=1, 2 gave
    -6.97, -7.36 against the exact -7.76); a support that depends on a summed site is refused
    for its Jacobian, summed over the steps."""
    y = jnp.array([0.1, 2.2, 1.0, -0.3])

    def accumulating(history):
        def model(y):
            s = ppl.sample("s", dist.HalfNormal(1.0))

            def step(c, y_t):
                x = ppl.sample("x", dist.Bernoulli(0.4))
                ppl.observe("y", dist.Normal(1.0 * (c + x), s + 0.5), y_t)
                return c + x, None
            ppl.scan(step, 0, y, history=history)
        return model

    for history in (0, 1, 2):
        with pytest.raises(ValueError, match=rf"'x' is inside ppl.scan\(history={history}\).*changed the term 'y' "
                                             rf"at step 3, 3 steps away.*history=3 or more"):
            marginalize(compile_model(accumulating(history), y))
    ld = compile_model(accumulating(3), y)  # honest: exact
    m = marginalize(ld)
    np.testing.assert_allclose(float(m.log_prob(jnp.array([0.3]))), brute_force(ld, m, jnp.array([0.3]), [("x", (4,), 2)]),
                               rtol=2e-5)

    def rolled(ys):  # element i's prior reads element i-1 of the previous step: not independent
        p = ppl.sample("p", dist.Beta(2.0, 2.0))

        def step(c, y_t):
            with ppl.plate("n", 2):
                x = ppl.sample("x", dist.Bernoulli(jnp.where(jnp.roll(c, 1) == 1, p, 1 - p)))
                ppl.observe("y", dist.Normal(2.0 * x, 1.0), y_t)
            return x, None
        ppl.scan(step, jnp.zeros(2, jnp.int32), ys)

    with pytest.raises(ValueError, match=r"'x' inside ppl.scan is declared inside plate\(s\) \['n'\].*other positions"):
        ppl.infer(rolled, jnp.zeros((3, 2)), method="nuts")

    def support_of_x(y):
        def step(c, y_t):
            x = ppl.sample("x", dist.Bernoulli(0.5))
            s = ppl.sample("s", dist.Uniform(0.0, 1.0 + x))
            ppl.observe("y", dist.Normal(s, 0.5), y_t)
            return c, None
        ppl.scan(step, 0, y)

    with pytest.raises(ValueError, match=r"support of the continuous site 's' in the scan depends on them.*Jacobian"):
        ppl.infer(support_of_x, y, method="nuts")

    def binomial_steps(y):  # a Binomial's total_count comes out of the scan traced
        q = ppl.sample("q", dist.Beta(2.0, 2.0))

        def step(c, y_t):
            x = ppl.sample("x", dist.Binomial(3, jnp.where(c >= 2, q, 1 - q)))
            ppl.observe("y", dist.Normal(1.0 * x, 0.7), y_t)
            return x, None
        ppl.scan(step, 0, y)

    with pytest.raises(ValueError, match=r"support of discrete site 'x' \(BinomialProbs\) inside ppl.scan.*Categorical"):
        ppl.infer(binomial_steps, y, method="nuts")


def test_the_advice_for_chains_a_scan_cannot_sum_is_followable():
    """The errors for two interacting sites in one ppl.scan, and for history=2, advise a Python
    for loop under gibbs: it runs. nuts sums such a loop while its joint values number at most
    MAX_STATES (a second-order chain of 5 steps: 32) and refuses beyond, naming the count
    (two interacting chains of 12 steps: 2^24); it never points back to gibbs's own refusal."""
    def factorial(y):  # two chains w_t, x_t, both read by y_t
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        trans = jnp.array([[p, 1 - p], [1 - p, p]])
        w = x = 0
        for t in range(y.shape[0]):
            w = ppl.sample(f"w{t}", dist.Categorical(trans[w]))
            x = ppl.sample(f"x{t}", dist.Categorical(trans[x]))
            ppl.observe(f"y{t}", dist.Normal(w + 2.0 * x, 1.0), y[t])

    def second_order(y):  # x_t depends on x_{t-1} and x_{t-2}
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        a = b = 0
        for t in range(y.shape[0]):
            probs = jnp.where(a == b, jnp.stack([p, 1 - p]), jnp.stack([1 - p, p]))
            a, b = b, ppl.sample(f"x{t}", dist.Categorical(probs))
            ppl.observe(f"y{t}", dist.Normal(2.0 * b, 1.0), y[t])

    fast = dict(num_warmup=100, num_samples=100, num_chains=1, progress_bar=False)
    y12, y5 = jnp.linspace(-1.0, 3.0, 12), jnp.linspace(-1.0, 3.0, 5)
    for model, y in [(factorial, y12), (second_order, y5)]:
        r = ppl.infer(model, y, method=ppl.Gibbs(**fast), key=0)
        assert np.isfinite(np.asarray(r.samples["p"])).all() and 0 < float(np.mean(r.samples["p"])) < 1
    r = ppl.infer(second_order, y5, method=ppl.NUTS(**fast), key=0)
    assert "32 joint values" in " ".join(r.diagnostics["summed_out"])
    with pytest.raises(ValueError, match="16777216 joint values"):
        ppl.infer(factorial, y12, method=ppl.NUTS(**fast), key=0)


def test_vindex_broadcasts_as_numpyros():
    x = jnp.arange(3 * 4 * 4 * 5).reshape(3, 4, 4, 5)
    i, j = jnp.array([0, 2, 1]), jnp.array([[1], [3]])
    got = ppl.Vindex(x)[..., i, :, j]
    want = np.stack([np.stack([np.asarray(x)[b][i[b], :, j[a, 0]] for b in range(3)]) for a in range(2)])
    np.testing.assert_array_equal(np.asarray(got), want)
    y = jnp.arange(12).reshape(3, 4)
    assert ppl.Vindex(y)[jnp.array([[0], [2]]), :].shape == (2, 1, 4) and int(ppl.Vindex(y)[1, 2]) == 6
    assert ppl.Vindex(x)[i].shape == (3, 4, 4, 5) and ppl.Vindex(y)[jnp.array([2, 0])].shape == (2, 4)
    with pytest.raises(IndexError, match="only first"):
        ppl.Vindex(x)[i, ..., 0]


def test_numpyro_enumeration_names_import_and_work():
    from ppl.contrib.funsor import config_enumerate, infer_discrete, markov
    from ppl.ops.indexing import Vindex

    assert Vindex is ppl.Vindex and list(markov(range(3))) == [0, 1, 2]

    @config_enumerate
    def model(y):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        x = 0
        for t in markov(range(y.shape[0])):
            x = ppl.sample(f"x{t}", dist.Categorical(Vindex(jnp.array([[p, 1 - p], [1 - p, p]]))[x]))
            ppl.observe(f"y{t}", dist.Normal(2.0 * x, 0.3), y[t])

    y = jnp.array([0.1, 2.1, 1.9, 0.0])
    tr = ppl.handlers.trace(ppl.handlers.seed(model, 0)).get_trace(y)
    assert tr["x0"].infer["enumerate"] == "parallel"
    conditioned = ppl.handlers.condition(model, data={"p": 0.8})
    tr = ppl.handlers.trace(infer_discrete(conditioned, temperature=0, rng_key=0)).get_trace(y)
    assert [int(tr[f"x{t}"].value) for t in range(4)] == [0, 1, 1, 0]


def _only_discrete(y):
    z = ppl.sample("z", dist.Categorical(jnp.array([0.5, 0.3, 0.2])))
    with ppl.plate("n", 2):
        ppl.observe("y", dist.Normal(z.astype(jnp.float32), 1.0), y)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["nuts", "hmc", "mh", "chees", "map", "vi"])
def test_a_method_with_no_continuous_latent_left_is_refused_naming_the_sites(method):
    # Summed out, the model has nothing left to sample or fit: the run returned no draws
    # (and ChEES failed on empty arrays). Gibbs and importance give the exact answer.
    with pytest.raises(ValueError, match="discrete site\\(s\\) 'z' are summed out.*method='gibbs'"):
        ppl.infer(_only_discrete, jnp.array([1.7, 2.2]), method=method, key=0)


def _two_levels(y):
    m = ppl.param("m", 0.0)
    s = ppl.sample("s", dist.HalfNormal(2.0))
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(m + 4.0 * z, s), y)


@pytest.mark.timeout(300)
def test_the_most_probable_discrete_values_are_those_given_the_fitted_params():
    # They were computed with the params' initial values (m = 0: every z = 1).
    y = jnp.array([10.0, 10.2, 9.8, 14.1, 13.9, 14.0])
    r = ppl.infer(_two_levels, y, method="mle", key=0)
    assert abs(float(r.params["m"]) - 10.0) < 0.1
    np.testing.assert_array_equal(r.params["z"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(r.samples["z"][0, 0], [0, 0, 0, 1, 1, 1])


def _param_and_discrete(y):
    m = ppl.param("m", 0.0)
    z = ppl.sample("z", dist.Categorical(jnp.array([0.5, 0.3, 0.2])))
    with ppl.plate("n", 2):
        ppl.observe("y", dist.Normal(z.astype(jnp.float32) + m, 1.0), y)


@pytest.mark.timeout(300)
def test_mle_over_params_alone_gives_the_most_probable_discrete_value():
    # No continuous latent once z is summed out: z was missing from params and samples.
    y = jnp.array([1.7, 2.2])
    r = ppl.infer(_param_and_discrete, y, method="mle", key=0)
    m = float(r.params["m"])
    # the most probable z given the fitted m, by enumeration
    logp = [np.log(p) - 0.5 * np.sum((np.asarray(y) - k - m) ** 2) for k, p in enumerate([0.5, 0.3, 0.2])]
    assert int(r.params["z"]) == int(np.argmax(logp)) and r.samples["z"].shape == (1, 1)
