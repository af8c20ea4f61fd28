"""``fastmlp bench``: the side-by-side comparison (see issue 4; being written)."""


def add_bench_parser(sub):
    p = sub.add_parser("bench", help="compare fastmlp with its peers side by side")
    p.set_defaults(func=lambda args: print("fastmlp bench: not available yet") or 1)
    return p
