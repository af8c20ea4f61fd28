"""The ``fastmlp`` command line: train, predict, evaluate, info and bench.

``main`` (the ``fastmlp`` script, ``python -m fastmlp`` and ``python -m fastmlp.cli``) and the
parser live in :mod:`.commands`; the modules beside it:

- :mod:`.train` -- ``fastmlp train``: data, split, standardisation, epochs, report;
- :mod:`.cluster` -- ``fastmlp train --dask``: the same job on a Dask cluster;
- :mod:`.data` -- reading data files, predictions and scores in the data's units;
- :mod:`.record` -- the training record a model file keeps, checked when read back;
- :mod:`.run` -- output paths, signals and the progress display.

A user error ends as one ``fastmlp: error: ...`` line on stderr with exit code 2.
"""
from .commands import build_parser, main
from .data import UserError

__all__ = ["main", "build_parser", "UserError"]
