"""The ``fastmlp`` command line.  Each subcommand lives in its own function/module and
registers itself in ``build_parser``; user errors end as one ``fastmlp: error:`` line, exit 2."""
import argparse
import sys
import time

import numpy as np


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def _int_list(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sizes


def _positive(cast):
    def parse(text):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        if not v > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return v
    return parse


def add_train_parser(sub):
    p = sub.add_parser("train", help="train an MLP (default: the sigmoid network on digits)")
    p.add_argument("--hidden", type=_int_list, default=[64], help="hidden sizes, e.g. 100,50")
    p.add_argument("--activation", default="sigmoid",
                   choices=["sigmoid", "logistic", "tanh", "relu", "identity"])
    p.add_argument("--epochs", type=_positive(int), default=30)
    p.add_argument("--batch-size", type=_positive(int), default=32)
    p.add_argument("--lr", type=_positive(float), default=0.1)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=_positive(int), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)
    return p


def load_digits_split(seed, dtype):
    """scikit-learn's bundled digits, standardised on the training part, 25% held out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return (scaler.transform(Xtr).astype(dtype), scaler.transform(Xte).astype(dtype), ytr, yte)


def run_train(args):
    from tqdm import tqdm
    from .model import MLP
    Xtr, Xte, ytr, yte = load_digits_split(args.seed, args.dtype)
    classes = np.unique(ytr)
    Ytr = (ytr[:, None] == classes[None, :]).astype(args.dtype)
    sizes = [Xtr.shape[1], *args.hidden, len(classes)]
    # the seed's network: sigmoid hidden layers, sigmoid output, squared error
    model = MLP(sizes, activation=args.activation, out_activation="sigmoid",
                loss="squared_error", dtype=args.dtype, random_state=args.seed,
                n_threads=args.threads)
    bar = tqdm(total=args.epochs, unit="epoch", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True)
    start = time.perf_counter()
    state = {"t": start}

    def progress(epoch, loss):
        now = time.perf_counter()
        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{len(Xtr) / (now - state['t']):,.0f}")
        state["t"] = now
        bar.update(1)

    model.fit(Xtr, Ytr, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
              optimizer=args.optimizer, momentum=args.momentum if args.optimizer == "sgd" else 0,
              callback=progress)
    bar.close()
    elapsed = time.perf_counter() - start
    accuracy = float(np.mean(classes[model.predict(Xte).argmax(1)] == yte))
    print(f"digits {Xtr.shape[1]}-{'-'.join(map(str, args.hidden))}-{len(classes)} "
          f"{args.activation}, {args.epochs} epochs in {elapsed:.2f} s "
          f"(first-call JIT included); final loss {model.loss_curve_[-1]:.4f}")
    print(f"held-out accuracy: {accuracy:.4f} ({len(yte)} samples)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description="Fast MLPs on the CPU.")
    sub = parser.add_subparsers(dest="command")
    add_train_parser(sub)
    from .bench import add_bench_parser
    add_bench_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        argv = ["train"]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["train", *argv])
    try:
        return args.func(args)
    except UserError as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
