"""The ``fastmlp bench`` command: its options, and the run.

``fastmlp``'s command line builds its ``bench`` subcommand from ``add_bench_parser`` at every
call, so this module stays light: the standard library and ``workloads.py`` at the top; the
harness (``runner.py``, whose workers hold the PyTorch code, and ``report.py``) is imported
only when ``run_bench`` runs.  It needs nothing from fastmlp's own command line: a bad option
is an argparse error, reported by whichever parser the caller built (``fastmlp``'s prints one
``fastmlp: error: ...`` line, exit 2).  ``main`` is the stand-alone entry of
``python benchmarks/compare.py``.
"""
import argparse
import importlib.util
import json
import textwrap

from .workloads import DEFAULT_PEERS, OPENBLAS_PINS, PEERS, SKIP_BY_DEFAULT, WORKLOADS, describe

_DESCRIPTION = "\n".join(textwrap.wrap(
    "Train the same networks with fastmlp, PyTorch CPU, NumPy and scikit-learn, each in its own "
    "process, alternated; report time per epoch, samples/s, fastmlp's speed ratio to each "
    "peer, the fraction of the GEMM-bound limit (OpenBLAS peak measured in the same run) and "
    "peak memory.", 88))
_EPILOG = "workloads:\n" + "\n".join(
    "  " + describe(name, w, w["n_samples"]) for name, w in WORKLOADS.items())


def _name_list(choices):
    def parse(text):
        names = [s.strip() for s in text.split(",") if s.strip()]
        bad = [n for n in names if n not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
        return names
    return parse


def _count(text):
    """A count of runs, epochs, samples, threads or seconds: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _thread_counts(text):
    """``--threads 1,2,4``: one thread count, or several for a scaling table."""
    counts = []
    for part in text.split(","):
        v = _count(part.strip())
        if v not in counts:
            counts.append(v)
    return counts


def _chart_path(text):
    """``--plot FILE.png``: checked at parse time -- matplotlib installed, a PNG's name, a file
    that can be written (as ``fastmlp train --plot``'s) -- so that a bad path costs no run (a
    folder's name was written as FOLDER.png, after the whole run, and said to be the folder; a
    missing folder failed after the run)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError(
            "needs matplotlib: pip install matplotlib (or fastmlp[plot])")
    from fastmlp.cli.data import UserError
    from fastmlp.cli.run import check_output_path
    try:
        check_output_path(text, "")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"{text}: the chart is a PNG; name it *.png")
    return text


def add_arguments(parser):
    """Add the options of ``fastmlp bench`` to an ``argparse`` parser; return the parser."""
    p = parser
    p.add_argument("--workloads", type=_name_list(list(WORKLOADS)), default=list(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--peers", type=_name_list(list(PEERS)), default=None,
                   help=f"comma-separated subset of {','.join(PEERS)} (default: all; missing "
                        "libraries are skipped with a note)")
    p.add_argument("--repeats", type=_count, default=None,
                   help="worker runs per peer and workload (default 3, --quick 1)")
    p.add_argument("--epochs", type=_count, default=None,
                   help="timed epochs per run, after one warm-up epoch (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="small N, one run, one epoch: a smoke test, not a measurement")
    p.add_argument("--samples", type=_count, default=None,
                   help="override N of every workload")
    p.add_argument("--threads", type=_thread_counts, default=None,
                   help="threads per worker (default: the cores this process may use); "
                        "several, comma-separated (1,2,4,8), run the whole comparison at each "
                        "count and end with the scaling table: fastmlp's s/epoch and its speed "
                        "over scikit-learn's at each count")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", type=_chart_path, default=None,
                   help="draw the comparison as a bar chart (needs matplotlib)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help=f"keep {' and '.join(OPENBLAS_PINS)} for the workers (default: unset)")
    p.add_argument("--timeout", type=_count, default=600,
                   help="seconds one worker may run (default 600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_bench)
    return p


def add_bench_parser(subparsers):
    """Register ``bench`` on the ``subparsers`` of a command line; return its parser."""
    p = subparsers.add_parser(
        "bench", help="compare fastmlp with PyTorch, NumPy and scikit-learn",
        description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(p)


def run_bench(args):
    """Run the comparison that ``args`` (parsed by ``add_arguments``) asks for; print the
    report.  Returns the exit status: 0, or 1 when no peer produced a result."""
    from .report import format_report, plot_report
    from .runner import run_benchmark
    repeats = args.repeats or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 3)
    peers, skip = args.peers, ()
    if peers is None:  # the default set skips the combinations in SKIP_BY_DEFAULT
        peers, skip = list(DEFAULT_PEERS), SKIP_BY_DEFAULT
    counts = args.threads or [None]
    if len(counts) > 1:
        return _run_scaling(args, counts, peers, repeats, epochs, skip)
    report = run_benchmark(args.workloads, peers, repeats=repeats, epochs=epochs,
                           quick=args.quick, n_samples=args.samples, threads=counts[0],
                           keep_openblas_env=args.keep_openblas_env, timeout=args.timeout,
                           progress=not args.no_progress, skip=skip)
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
        if args.plot:
            print(f"Chart written to {args.plot}.")
    return 0 if any(e["results"] for e in report["workloads"].values()) else 1


def _run_scaling(args, counts, peers, repeats, epochs, skip):
    """``--threads`` with several counts: the comparison at each, then the scaling table."""
    import sys

    from .report import format_report, format_scaling, plot_report
    from .runner import run_benchmark, scaling
    reports = [run_benchmark(args.workloads, peers, repeats=repeats, epochs=epochs,
                             quick=args.quick, n_samples=args.samples, threads=k,
                             keep_openblas_env=args.keep_openblas_env, timeout=args.timeout,
                             progress=not args.no_progress, skip=skip) for k in counts]
    table = scaling(reports)
    if args.plot:  # the chart of the largest thread count
        plot_report(reports[-1], args.plot)
    if args.json:
        print(json.dumps({"fastmlp_bench_scaling": 1, "scaling": table, "reports": reports},
                         indent=1))
    else:
        for report in reports:
            print(format_report(report))
            print()
        print(format_scaling(table))
        if args.plot:
            print(f"Chart of {counts[-1]} threads written to {args.plot}.", file=sys.stdout)
    return 0 if any(e["results"] for r in reports for e in r["workloads"].values()) else 1


def main(argv=None):
    """``python benchmarks/compare.py [options]``: the same as ``fastmlp bench``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="fastmlp bench", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    return args.func(args)
