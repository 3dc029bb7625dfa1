"""Release gate: simulation-based calibration of every sampling method (`ppl.sbc`).

Runs the cells of `benchmarks/sbc.py` (every method of `ppl.METHODS` that gives posterior
draws, on normal-normal, beta-Bernoulli, a regression with unknown noise and a two-component
mixture with discrete assignments; 200 simulations, 100 draws per rank), records every
cell's p-values in benchmarks/results/sbc.json, and asserts that no simulation failed and
that every scalar's p-value exceeds the Bonferroni threshold (1% family-wise over the whole
grid; see `benchmarks.sbc.threshold`). Cells listed in `benchmarks.sbc.EXPECTED_TO_FAIL` are
approximations (VI on non-Gaussian posteriors) whose miscalibration is expected: they run,
are recorded, and are marked xfail with the reason. About 10 minutes on two CPU cores.
"""
import pytest

from benchmarks import sbc as gate

pytestmark = pytest.mark.slow
RECORDS = []


@pytest.fixture(scope="module", autouse=True)
def _save_records():
    yield
    if RECORDS:
        gate.save(RECORDS)


def _cells():
    for method, model in gate.cells():
        reason = gate.EXPECTED_TO_FAIL.get((method, model))
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        yield pytest.param(method, model, marks=marks, id=f"{method}-{model}")


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("method,model", list(_cells()))
def test_method_is_calibrated(method, model):
    record = gate.run_cell(method, model)
    RECORDS.append(record)
    limit = gate.threshold()
    assert record["failed_simulations"] == 0, f"{method} on {model}: failed runs {record['failures']}"
    assert record["min_p"] > limit, (
        f"{method} on {model} is miscalibrated: smallest p-value {record['min_p']:.3g} <= {limit:.3g} "
        f"(p-values {record['p_values']}, mean rank / L {record['mean_rank']}, sd {record['sd_rank']})")
