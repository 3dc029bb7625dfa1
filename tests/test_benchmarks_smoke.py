"""The benchmark harness: the NumPyro bridge is exact, skips are recorded, and a quick run
writes the results file and the report with the expected cells."""
import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from benchmarks import harness
from benchmarks.__main__ import main
from benchmarks.bridge import potential_check
from models import ZOO
from ppl import dist


def _scaled_masked(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 3.0))
    s = ppl.sample("s", dist.LogNormal(0.0, 1.0))
    with ppl.plate("data", x.shape[0]):
        with ppl.handlers.scale(scale=2.5), ppl.handlers.mask(mask=x > -1.0):
            ppl.observe("x", dist.Normal(mu, s), x)
    ppl.deterministic("mu2", mu * 2)
    ppl.factor("pen", -0.5 * mu**2)


BRIDGE_CASES = ["beta_bernoulli", "linear_regression", "kidiq_kidscore_momiq", "eight_schools_noncentered",
                "hmm_example", "gp_regr"]


@pytest.mark.parametrize("name", BRIDGE_CASES + ["scale_mask_factor"])
def test_bridge_potential_energy_is_minus_log_prob(name):
    # NumPyro's potential energy of the bridged model at the unconstrained point of ppl's z
    # is -ppl.log_prob(z), Jacobian included, to float32 round-off: the two run one model.
    if name == "scale_mask_factor":
        model, args, kwargs = _scaled_masked, (jnp.linspace(-2.0, 3.0, 7),), {}
    else:
        m = ZOO[name]
        args, kwargs = m.load()
        model = m.model
    for key in (0, 1):
        pe, minus_lp = potential_check(model, args, kwargs, key=key)
        assert np.isfinite(pe)
        assert pe == pytest.approx(minus_lp, rel=1e-5, abs=1e-3)


def test_inapplicable_methods_are_skipped_with_the_reason():
    kidiq = harness.load_model("kidiq_kidscore_momiq", quick=True)
    cell = harness.run_cell(kidiq, "importance", harness.QUICK, harness.select_devices()[0])
    assert cell["status"] == "skipped" and "beta" in cell["reason"] and "improper" in cell["reason"]
    # gmm's discrete 'z' is summed out for NUTS: the check that decides a skip accepts it (the
    # slow test below runs the cell).
    gmm = harness.load_model("gmm", quick=True)
    harness.configure("nuts", harness.QUICK).check(ppl.compile(gmm.module.model, *gmm.args, **gmm.kwargs))


@pytest.mark.slow
def test_a_model_with_a_discrete_latent_runs_its_nuts_cell():
    gmm = harness.load_model("gmm", quick=True)  # its discrete 'z' is summed out for NUTS: the cell runs
    cell = harness.run_cell(gmm, "nuts", harness.QUICK, harness.select_devices()[0], numpyro=False)
    assert cell["status"] == "ok", cell.get("reason")


def test_quick_run_writes_results_and_report(tmp_path):
    _quick_run_writes_results_and_report(tmp_path, ["beta_bernoulli"])


@pytest.mark.slow
def test_quick_run_of_two_models_writes_results_and_report(tmp_path):
    _quick_run_writes_results_and_report(tmp_path, ["beta_bernoulli", "eight_schools_noncentered"])


def _quick_run_writes_results_and_report(tmp_path, models):
    methods = ["nuts", "map", "importance"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--quick", "--models", *models, "--methods", *methods, "--out", str(tmp_path)]) == 0
    files = list(tmp_path.glob("*-quick.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    device = harness.device_label(harness.select_devices()[0])
    assert set(data["cells"]) == {f"{m}/{k}/{device}" for m in models for k in methods}
    assert data["quick"] and data["hardware"]["backend"] and data["settings"]["chains"] == 2
    for key, c in data["cells"].items():
        assert c["status"] == "ok", (key, c["reason"])
        p = c["ppl"]
        assert p["compile_s"] > 0 and p["run_s"] > 0 and p["first_call_s"] >= p["run_s"], key
    # Samplers: ESS and ESS/s, accuracy within Monte Carlo error (ESS >= ~50 -> |z| << 0.6).
    for m in models:
        nuts = data["cells"][f"{m}/nuts/{device}"]
        assert nuts["ppl"]["ess"] > 50 and nuts["ppl"]["ess_per_s"] > 0
        assert nuts["ppl"]["grad_evals"] > nuts["ppl"]["sampling_grad_evals"] > 0
        z = nuts["ppl"].get("exact_worst_z", nuts["ppl"].get("ref_worst_z"))
        assert z is not None and z < 0.6
        # NumPyro ran the same model with the same settings, and the ratios are filled in.
        n = nuts["numpyro"]
        assert n["peer"] == "NUTS" and n["ess"] > 50 and n["run_s"] > 0 and n["first_call_s"] > 0
        assert n.get("exact_worst_z", n.get("ref_worst_z")) < 0.6
        assert nuts["ratios"]["speedup_run"] > 0 and nuts["ratios"]["ess_per_s"] > 0
        assert data["cells"][f"{m}/map/{device}"]["numpyro"]["peer"] == "SVI+AutoDelta"
        assert data["cells"][f"{m}/importance/{device}"]["numpyro"] is None
    bb = data["cells"][f"beta_bernoulli/importance/{device}"]["ppl"]
    assert abs(bb["evidence_error"]) < 0.1  # 2000 prior particles on a 1-d conjugate model
    assert data["cells"][f"beta_bernoulli/map/{device}"]["ppl"]["exact_worst_z"] < 0.05
    if "eight_schools_noncentered" in models:
        assert data["cells"][f"eight_schools_noncentered/nuts/{device}"]["ppl"]["ref_worst_sd_ratio"] is not None

    report = (tmp_path / "REPORT.md").read_text()
    for m in models:
        for k in methods:
            assert f"| {m} | {k} |" in report
    assert f"{files[0].stem}-{device.replace(':', '')}-ess_per_s.png" in report
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert {f"{files[0].stem}-{device.replace(':', '')}-{k}.png" for k in ("ess_per_s", "speedup")} <= pngs

    # A re-run with a subset merges into the same file.
    assert main(["--quick", "--models", "beta_bernoulli", "--methods", "mle", "--out", str(tmp_path),
                 "--no-report"]) == 0
    merged = json.loads(files[0].read_text())
    assert len(merged["cells"]) == len(data["cells"]) + 1
    assert merged["cells"][f"beta_bernoulli/nuts/{device}"] == data["cells"][f"beta_bernoulli/nuts/{device}"]


@pytest.mark.parametrize("sampler", ["nuts", "nuts_lockstep", "chees", "numpyro"])
def test_a_many_chains_point_records_speed_and_lane_utilisation(sampler):
    from benchmarks import many_chains

    p = many_chains.point("eight_schools", 4, 30, 30, sampler)
    assert p["first_s"] > 0 and p["ess_per_s"] > 0
    if sampler != "numpyro":  # NumPyro's run alone is not measured (see many_chains.numpyro_point)
        assert p["first_s"] >= p["run_s"] > 0 and p["us_per_grad"] > 0
    if sampler != "chees":  # every ChEES chain takes the same steps: no lanes to measure
        assert 0.0 < p["lane_util"] <= 1.0
    if sampler == "nuts":  # the lanes' ceiling: no schedule of these chains passes it
        assert p["lane_util"] <= p["lane_util_bound"] <= 1.0


def test_report_shows_the_many_chains_points(tmp_path):
    """`python -m benchmarks report` renders the many-chains points: a row per (model, chains,
    sampler) with the ESS/s ratio to NumPyro at the same chains, and one plot; a row whose
    NumPyro point predates its bulk ESS (no "ess": "bulk") has its ratios marked †, and a ppl
    NUTS point from before one vectorised batch per core (no "groups") ‡."""
    from benchmarks import report

    def pt(chains, sampler, ess_per_s, util):
        return {"model": "eight_schools", "chains": chains, "sampler": sampler, "warmup": 500, "draws": 500,
                "first_s": 10.0, "compile_s": None if sampler == "numpyro" else 4.0, "run_s": 6.0,
                "ess_per_s": ess_per_s, "us_per_grad": None if sampler == "numpyro" else 2.5,
                "grad_evals": 1000, "lane_util": util, **({"ess": "bulk"} if chains == 256 else {}),
                **({"groups": 2} if chains == 256 and sampler != "numpyro" else {})}

    points = [pt(c, s, e * c, u) for c in (4, 256) for s, e, u in
              (("nuts", 30.0, 0.6), ("nuts_lockstep", 20.0, 0.3), ("chees", 25.0, None), ("numpyro", 15.0, 0.3))]
    data = {"cells": {}, "scaling": {"many": {f"{p['model']}/{p['chains']}/{p['sampler']}": p for p in points}}}
    (tmp_path / "cpu-test.json").write_text(json.dumps(data))
    (tmp_path / "sbc.json").write_text(json.dumps({"cells": []}))  # not a harness file: left out
    text = report.build(tmp_path).read_text()
    assert "| eight_schools | 256 | ppl NUTS (lanes) | 500 + 500 | 10 | 4 | 7.68e+03 | ×2.00 | 2.5 | 1000 | 0.6 |" in text
    assert "| eight_schools | 4 | NumPyro NUTS (vectorized) | 500 + 500 | 10 | - | 60 | - | - | 1000 | 0.3 |" in text
    assert "| eight_schools | 4 | ppl NUTS (lanes) | 500 + 500 | 10 | 4 | 120 | ×2.00 † ‡ | 2.5 | 1000 | 0.6 |" in text
    assert "| eight_schools | 4 | ppl ChEES-HMC | 500 + 500 | 10 | 4 | 100 | ×1.67 † | 2.5 | 1000 | - |" in text
    assert "cpu-test-many.png" in text and (tmp_path / "cpu-test-many.png").exists()


def test_many_chains_samplers_leave_out_chees_for_one_chain():
    from benchmarks import many_chains

    assert "chees" not in many_chains.samplers(chains=1)
    assert many_chains.samplers(numpyro=False, chains=4) == ["nuts", "nuts_lockstep", "chees"]


def test_the_divergence_benchmark_counts_each_seed_and_writes_its_table():
    """`python -m benchmarks.divergences` runs the example's own code on each side, one chain
    per seed, and records the post-warmup divergences in NumPyro's sense (ppl's numerical
    failures included, and counted apart) out of the post-warmup draws, the adapted step size
    and the mean acceptance; its table has a row per (example, side)."""
    from benchmarks import divergences

    runs = {side: divergences.measure("horseshoe_regression: bernoulli", side, [0, 1], scale=0.05)
            for side in ("ppl", "numpyro")}
    for side, rs in runs.items():
        assert [r.seed for r in rs] == [0, 1]
        for r in rs:
            assert r.draws == 100 and 0 <= r.divergences <= r.draws, (side, r)
            assert r.step_size > 0 and 0.0 <= r.accept <= 1.0, (side, r)
            assert (r.nonfinite is None) == (side == "numpyro"), (side, r)
            assert side == "numpyro" or 0 <= r.nonfinite <= r.divergences, r
    s = divergences.summarise(runs["ppl"])
    assert s["seeds"] == 2 and s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["mean"] == np.mean([r.divergences for r in runs["ppl"]])
    data = {"meta": {"seeds": 2, "scale": 0.05, "cpus": 2, "date": "today"},
            "cases": {"horseshoe_regression: bernoulli": {side: divergences.summarise(rs) for side, rs in runs.items()}}}
    text = divergences.render(data)
    assert "| horseshoe_regression: bernoulli | N 100, D 32, 50 warmup + 100 draws, 1 chain | ppl | 2 |" in text
    assert "| horseshoe_regression: bernoulli | N 100, D 32, 50 warmup + 100 draws, 1 chain | numpyro | 2 |" in text
