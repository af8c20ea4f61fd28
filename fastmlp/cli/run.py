"""What every command needs while it runs: output paths checked before any work, SIGINT and
SIGTERM turned into a stop request (training) or a clean exit (:class:`StopOnSignal`), and the
progress display."""
import os
import signal
import sys
import threading
import time

from .data import UserError

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def check_output_path(path, option):
    """An output path that can be written: a regular file (or a new one) in a writable folder
    -- for a symlink, its target's -- or a device or FIFO that can be written into."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: is a directory")
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, /dev/stdout, a FIFO
        if not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: permission denied")
        return
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path)
                                             and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path}: permission denied")


class Progress:
    """A tqdm bar on a terminal; plain lines (at most one a second) otherwise.  The ETA is
    measured from the end of the first epoch, which includes the kernels' compilation."""

    def __init__(self, total, initial, n_rows, quiet, metric):
        self.total, self.n_rows, self.metric = total, n_rows, metric
        self.quiet = quiet
        self.bar = None
        self.t_last = self.t_line = time.perf_counter()
        self.e0 = initial
        self.t_first = None  # (time, epoch) at the end of this run's first epoch
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            # smoothing 0: the rate is epochs done over time taken, counted from the end of
            # the first epoch (below)
            self.bar = tqdm(total=total, initial=initial, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, leave=False, smoothing=0)

    def update(self, epoch, loss, score):
        now = time.perf_counter()
        rate = self.n_rows / max(now - self.t_last, 1e-9)
        self.t_last = now
        first = self.t_first is None
        if first:
            self.t_first = (now, epoch)
        if self.quiet:
            return
        if self.bar is not None:
            post = {"loss": f"{loss:.4g}", "samples/s": f"{rate:,.0f}"}
            if score is not None:
                post[f"val_{self.metric}"] = f"{score:.4f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
            if first:  # the first epoch includes the compilation: time the rest only
                self.bar.initial, self.bar.start_t = self.bar.n, time.time()
            return
        if epoch in (self.e0 + 1, self.total) or now - self.t_line >= 1.0:
            self.t_line = now
            t1, e1 = self.t_first
            if epoch > e1:
                eta = (now - t1) / (epoch - e1) * (self.total - epoch)
                eta = f"ETA {int(eta // 60)}:{int(eta % 60):02d}"
            else:
                eta = "ETA -:--"  # one epoch (with compilation) says little about the rest
            val = "" if score is None else f"  val {self.metric} {score:.4f}"
            print(f"epoch {epoch}/{self.total}  loss {loss:.6g}{val}  {rate:,.0f} samples/s  "
                  f"{eta}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Interrupted(BaseException):
    """A signal outside training (while reading data, say): nothing to save.  A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` of a reader turns
    it into a "bad file" error."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopOnSignal:
    """While ``deferring`` (training, saving), SIGINT/SIGTERM set a flag and call the model's
    ``request_stop()``: training stops at the end of the current batch and saves.  Otherwise
    (set-up), or on a second signal, they raise :class:`Interrupted` at once.  Outside the
    main thread (a notebook job, a test runner) no handler can be installed: the process's
    own handling (KeyboardInterrupt) applies."""

    def __init__(self, model_ref):
        self.model_ref = model_ref
        self.signum = None
        self.deferring = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in EXIT_SIGNAL:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None or not self.deferring:
            raise Interrupted(signum)
        self.signum = signum
        model = self.model_ref()
        if model is not None:
            model.request_stop()

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)
        return False
