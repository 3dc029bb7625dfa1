"""Issue-15 benchmark: what running in chunks, checkpointing and streaming draws cost.

Per model (eight schools non-centred, logistic regression 5000 x 25; NUTS, 4 chains, 1000
warmup + 1000 draws) and in the same process, interleaved over `--repeats` rounds (medians;
each ratio the median over rounds of that round's ratio):

  chunking    run time with the default chunks (about a second of work each) against ONE
              chunk of every iteration (the same compiled program): goal <= 1.03
  checkpoint  run time with `checkpoint=` (state and draws written after each chunk) against
              the same run without: goal <= 1.05

and, each in a fresh process (`--streaming`): the peak resident memory of 4 chains x N draws
of a 500-dimensional model (MH: the draws are what costs memory) with `checkpoint=` (draws
streamed to disk, read lazily) for N = 20 000 and 200 000, and in memory for N = 20 000. A
bounded run's peak does not grow with N.

Run: python -m benchmarks.bench_chunks [--repeats 3] [--streaming]
Writes benchmarks/results/chunks_<hardware>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np

import ppl
from benchmarks._common import hardware, hardware_label
from benchmarks._twins import cases

STREAM = textwrap.dedent("""
    import json, resource, sys, time, warnings
    import jax.numpy as jnp, numpy as np, ppl
    from ppl import dist
    def model(y):
        x = ppl.sample("x", dist.Normal(0.0, 1.0).expand([500]).to_event(1))
        ppl.observe("y", dist.Normal(x, 1.0).to_event(1), y)
    n, path = int(sys.argv[1]), sys.argv[2]
    y = jnp.zeros(500)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ppl.infer(model, y, method=ppl.MH(num_warmup=500, num_samples=n, progress_bar=False), key=0,
                      checkpoint=None if path == "-" else path)
    shape = tuple(r.samples["x"].shape)
    mean = float(np.asarray(r.samples["x"][0, :1000, 0]).mean())
    print(json.dumps({"draws": n, "checkpoint": path != "-", "seconds": time.perf_counter() - t,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "shape": shape, "draws_bytes_mb": 4 * 500 * 4 * n / 2 ** 20}))
""")


def _run_s(model, args, kwargs, method, checkpoint=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ppl.infer(model, *args, method=method, key=0, checkpoint=checkpoint, **kwargs)
    return r.timing["run_s"]


def overheads(repeats):
    rows = []
    for name, (model, _, args, kwargs) in cases(["eight_schools", "logreg_5000x25"]).items():
        chunked = ppl.NUTS(progress_bar=False)
        one = ppl.NUTS(progress_bar=False, chunk_size=2000)
        _run_s(model, args, kwargs, chunked)  # compile both programs first
        _run_s(model, args, kwargs, one)
        times = {"chunked": [], "one_chunk": [], "checkpoint": []}
        for _ in range(repeats):
            times["one_chunk"].append(_run_s(model, args, kwargs, one))
            times["chunked"].append(_run_s(model, args, kwargs, chunked))
            d = tempfile.mkdtemp()
            try:
                times["checkpoint"].append(_run_s(model, args, kwargs, chunked, checkpoint=Path(d) / "c"))
            finally:
                shutil.rmtree(d, ignore_errors=True)
        med = {k: float(np.median(v)) for k, v in times.items()}
        t = {k: np.asarray(v) for k, v in times.items()}
        # Ratios are medians over rounds of each round's own ratio: a round's three runs share
        # the machine's load of that moment (on a shared machine it moves by tens of percent).
        rows.append({"model": name, **{f"{k}_run_s": v for k, v in med.items()},
                     "chunking_ratio": float(np.median(t["chunked"] / t["one_chunk"])),
                     "checkpoint_ratio": float(np.median(t["checkpoint"] / t["chunked"])), "runs": times})
        print(f"{name:16s} one chunk {med['one_chunk']:.3f} s  chunked {med['chunked']:.3f} s "
              f"(x{rows[-1]['chunking_ratio']:.3f})  checkpoint {med['checkpoint']:.3f} s "
              f"(x{rows[-1]['checkpoint_ratio']:.3f})")
    return rows


def streaming():
    rows = []
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for n, to_disk in ((20_000, False), (20_000, True), (200_000, True)):
        d = tempfile.mkdtemp()
        try:
            out = subprocess.run([sys.executable, "-c", STREAM, str(n), str(Path(d) / "c") if to_disk else "-"],
                                 env=env, capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-3000:])
            row = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        rows.append(row)
        print(f"{n:7d} draws x 4 chains x 500 dims ({row['draws_bytes_mb']:.0f} MB of draws), "
              f"{'streamed to disk' if to_disk else 'in memory'}: peak RSS {row['peak_rss_mb']:.0f} MB, "
              f"{row['seconds']:.1f} s")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--streaming", action="store_true")
    a = p.parse_args(argv)
    hw = hardware()
    out = {"hardware": hw, "overheads": overheads(a.repeats)}
    if a.streaming:
        out["streaming"] = streaming()
    path = Path(__file__).parent / "results" / f"chunks_{hardware_label(hw)}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
