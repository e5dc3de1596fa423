"""Fleet replay: many recorded drives replayed on Dask, as Parquet decision intervals.

:mod:`.intervals` turns a replay's timeline into rows (one per probe and span of the same
decision); :mod:`.run` runs one task per log on a ``distributed`` cluster, resumable, and
summarises.  Needs the ``fleet`` extra (``pip install 'drivegate[fleet]'``): Dask, pyarrow,
tqdm; the head-unit install never imports this package.
"""
