"""Benchmarks: each prints its figures as one JSON line per measurement.

* ``python -m qa.bench`` -- the engines on the same inputs, with the file-reading floor
  (:mod:`qa.bench.engine`; ``make bench``);
* ``python -m qa.bench figures|report`` -- figure cost per product and whole report runs
  (:mod:`qa.bench.report`; ``make bench-figures``, ``make bench-report``);
* ``python -m qa.bench.runs CASE`` -- whole pytest runs: memory, serial vs ``-n 2``,
  scale, collection (:mod:`qa.bench.runs`; ``make bench-runs``);
* ``python -m qa.bench.nightly`` -- a night against the loopback archive
  (``make bench-nightly``);
* ``python -m qa.bench.cluster`` -- plain, ``-n 2`` and Dask runs (``make bench-cluster``).
"""
