"""The report of ``fastmlp bench``: the table in text (``format_report``) and the bar chart
(``plot_report``, matplotlib imported when called), both from ``runner.run_benchmark``'s dict."""
from .workloads import DEFAULT_PEERS, PEERS


def format_report(report):
    """The report of ``runner.run_benchmark`` as the text that ``fastmlp bench`` prints: a
    table per workload, the memory goal of fastmlp, skipped peers and notes.

    Parameters
    ----------
    report : dict

    Returns
    -------
    str
    """
    lines = []
    peak = report["gemm_peak_flops"]
    s = report["settings"]
    lines.append(f"fastmlp bench: {report['machine']['threads']} threads, {s['repeats']} run(s) "
                 f"per peer, {s['epochs']} timed epoch(s) per run (after a warm-up epoch), "
                 f"medians; each peer in its own process, alternated.")
    if s["openblas_env_unset"]:
        lines.append(f"Unset for the worker processes: {', '.join(s['openblas_env_unset'])} "
                     "(they pin old OpenBLAS kernels and slow a current one).")
    if peak:
        lines.append(f"GEMM peak (OpenBLAS, same run): {peak['float32'] / 1e9:.0f} GFLOP/s "
                     f"float32, {peak['float64'] / 1e9:.0f} GFLOP/s float64.")
    for name, entry in report["workloads"].items():
        lines.append("")
        lim = entry["limit_s"]
        lines.append(entry["description"] + (f"; GEMM limit {lim:.3f} s/epoch" if lim else ""))
        header = ("peer", "s/epoch", "samples/s", "fastmlp x", "of limit", "peak MB", "fit MB")
        rows = [header]
        for peer, r in entry["results"].items():
            rows.append((r["label"], f"{r['epoch_s']:.4f}", f"{r['samples_per_s']:,.0f}",
                         "-" if peer == entry["reference"] or r["fastmlp_speedup"] is None
                         else f"{r['fastmlp_speedup']:.2f}",
                         f"{r['fraction_of_limit']:.2f}" if r["fraction_of_limit"] else "-",
                         f"{r['rss_peak_mb']:.0f}", f"{r['fit_mem_mb']:.0f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j])
                                          for j, c in enumerate(row)))
            if i == 0:
                lines.append("  " + "  ".join("-" * wd for wd in widths))
        for peer, r in entry["results"].items():
            if r.get("plans"):  # fastmlp's planner: the way each run's steps ran
                ways = ", ".join(sorted({f"{p.get('label', p['strategy'])} ({p['source']})"
                                         for p in r["plans"]}))
                trial = r["plans"][-1]["seconds"]
                timed = "; trial step " + ", ".join(
                    f"{k} {v * 1e3:.2f} ms" for k, v in trial.items()) if trial else ""
                lines.append(f"  {r['label']} steps: {ways}{timed}")
        for peer, r in entry["results"].items():
            if "mem_ratio" in r:
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["accounted_mb"].items())
                lines.append(f"  {r['label']} memory: {r['fit_mem_mb']:.1f} MB above the "
                             f"{r['rss_base_mb']:.0f} MB baseline for {r['accounted_total_mb']:.1f}"
                             f" MB accounted ({parts}): {r['mem_ratio']:.2f}x (goal <= 1.2x)")
        for peer, errs in entry["errors"].items():
            lines.append(f"  {PEERS[peer][0]} failed: {errs[0]}")
    lines.append("")
    lines.append("fastmlp x: the peer's time per epoch over fastmlp's (higher = fastmlp faster); "
                 "of limit: the GEMM-bound limit over the time per epoch; fit MB: peak RSS above "
                 "the worker's baseline after imports and warm-up.")
    for peer, why in report["skipped"].items():
        lines.append(f"Skipped {PEERS[peer][0]}: {why}")
    for note in report["notes"]:
        lines.append(f"Note: {note}")
    lines.append(f"Wall time {report['wall_s']:.0f} s.")
    return "\n".join(lines)


def format_scaling(table):
    """The thread-scaling table (``runner.scaling``) as text: per workload and thread count,
    fastmlp's s/epoch, its fraction of the GEMM-bound limit, scikit-learn's s/epoch, fastmlp's
    speed over scikit-learn's and the plans fastmlp ran.

    Examples
    --------
    >>> print(format_scaling({"threads": [1, 2], "workloads": {"sk64": [
    ...     {"threads": 1, "fastmlp_s": 0.04, "fraction_of_limit": None, "sklearn_s": 0.1,
    ...      "x_sklearn": 2.5, "plans": ["blas/1 (one thread)"]},
    ...     {"threads": 2, "fastmlp_s": 0.02, "fraction_of_limit": 0.5, "sklearn_s": None,
    ...      "x_sklearn": None, "plans": []}]}}))
    Thread scaling (fastmlp s/epoch; x scikit-learn: its s/epoch over fastmlp's)
      workload  threads  fastmlp s/epoch  of limit  sklearn s/epoch  x sklearn  plan
      --------  -------  ---------------  --------  ---------------  ---------  -------------------
      sk64            1           0.0400         -           0.1000       2.50  blas/1 (one thread)
      sk64            2           0.0200      0.50                -          -
    """
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    header = ("workload", "threads", "fastmlp s/epoch", "of limit", "sklearn s/epoch",
              "x sklearn", "plan")
    rows = [header]
    for name, entries in table["workloads"].items():
        for e in entries:
            rows.append((name, str(e["threads"]), num(e["fastmlp_s"], ".4f"),
                         num(e["fraction_of_limit"], ".2f"), num(e["sklearn_s"], ".4f"),
                         num(e["x_sklearn"], ".2f"), ", ".join(e["plans"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["Thread scaling (fastmlp s/epoch; x scikit-learn: its s/epoch over fastmlp's)"]
    for i, row in enumerate(rows):
        cells = [c.ljust(widths[j]) if j in (0, len(row) - 1) else c.rjust(widths[j])
                 for j, c in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_report(report, path):
    """Draw the report as grouped bars per workload (fraction of the GEMM limit; peak memory
    above baseline) into the PNG file ``path``.  Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(report["workloads"])
    peers = [p for p in DEFAULT_PEERS
             if any(p in report["workloads"][n]["results"] for n in names)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(peers), 1)
    for i, peer in enumerate(peers):
        xs = [j + (i - (len(peers) - 1) / 2) * width for j in range(len(names))]
        res = [report["workloads"][n]["results"].get(peer) for n in names]
        frac = [r["fraction_of_limit"] or 0 if r else 0 for r in res]
        mem = [r["fit_mem_mb"] if r else 0 for r in res]
        axes[0].bar(xs, frac, width, label=PEERS[peer][0])
        axes[1].bar(xs, mem, width, label=PEERS[peer][0])
    for ax, title in zip(axes, ("fraction of the GEMM-bound limit (higher is better)",
                                "peak memory above baseline, MB (lower is better)")):
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_title(title, fontsize=10)
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle("fastmlp bench (%d threads)" % report["machine"]["threads"])
    fig.tight_layout()
    from fastmlp.persistence import atomic_write
    # the PNG format named: savefig would otherwise add ".png" to a name without it
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
