"""`python -m benchmarks` (or `ppl-bench`): benchmark every method on every model, beside NumPyro.

  python -m benchmarks [run] [--quick] [--models M ...] [--methods M ...] [--devices D ...]
                             [--out DIR] [--no-numpyro] [--no-report] [--key K]
      the matrix models x methods x devices; results merged into DIR/<hardware>[-quick].json,
      then DIR/REPORT.md regenerated. --quick: small settings (2 chains x 200 + 200, 2000
      particles, 300 VI steps) on two models, a few minutes on a laptop.
  python -m benchmarks scaling [--quick] [--axes chains N d many] [--values V ...] [--models M ...]
                              [--out DIR] [--no-numpyro]
      NUTS cost per gradient against chains (1..1024), data size N and dimension d; "many":
      1..4096 vectorised chains of NUTS (lanes and lockstep), ChEES and NumPyro's NUTS on the
      --models (`benchmarks.many_chains`); into the same results file.
  python -m benchmarks report [--out DIR]
      DIR/REPORT.md and its PNG plots from every results file in DIR.

DIR defaults to benchmarks/results. Models: the zoo (`models.ZOO`, reference posteriors
included) and `gmm` (discrete); methods: every entry of `ppl.METHODS`; devices: the default
device and, on an accelerator, the CPU too ("all", "cpu", "gpu", "tpu" or labels like "cuda:1").
"""
from __future__ import annotations

import argparse
import sys

COMMANDS = ("run", "scaling", "report")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the model x method x device matrix (default)")
    run.add_argument("--quick", action="store_true", help="small settings and two models: minutes on a laptop")
    run.add_argument("--models", nargs="+", default=None, help="model names (default: the zoo; --quick: two)")
    run.add_argument("--methods", nargs="+", default=None, help="entries of ppl.METHODS (default: all)")
    run.add_argument("--devices", nargs="+", default=None, help='"all", "cpu", "gpu", "tpu" or labels like cuda:0')
    run.add_argument("--no-report", action="store_true", help="do not regenerate REPORT.md afterwards")
    run.add_argument("--key", type=int, default=0)
    scaling = sub.add_parser("scaling", help="NUTS cost against chains, N and d")
    scaling.add_argument("--quick", action="store_true")
    scaling.add_argument("--axes", nargs="+", default=None, choices=["chains", "N", "d", "many"])
    scaling.add_argument("--values", nargs="+", type=int, default=None, help="values for the (single) axis")
    scaling.add_argument("--models", nargs="+", default=None,
                         help="the many axis's models: eight_schools, logreg_5000x25, gauss100 (default: all three; "
                              "--quick: eight_schools)")
    scaling.add_argument("--no-report", action="store_true")
    report = sub.add_parser("report", help="REPORT.md and plots from every results file")
    for s in (run, scaling, report):
        s.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    for s in (run, scaling):
        s.add_argument("--no-numpyro", action="store_true", help="skip the NumPyro peers")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["run"] + argv
    a = _parser().parse_args(argv)

    import warnings

    from benchmarks import harness, report

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    out = a.out or harness.RESULTS_DIR
    if a.command == "report":
        print(f"report: {report.build(out)}")
        return 0
    if a.command == "scaling":
        from benchmarks import scaling

        path = scaling.run_scaling(axes=a.axes, values=a.values, quick=a.quick, out_dir=out, numpyro=not a.no_numpyro,
                                   log=lambda s: print(s, flush=True), models=a.models)
    else:
        path = harness.run_matrix(models=a.models, methods=a.methods, devices=a.devices, quick=a.quick, out_dir=out,
                                  numpyro=not a.no_numpyro, key=a.key, log=lambda s: print(s, flush=True))
    print(f"results: {path}")
    if not a.no_report:
        print(f"report: {report.build(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
