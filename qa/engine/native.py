"""The native engine: HASP's decisions from vectorized numpy, reading each file once."""
from __future__ import annotations

from collections.abc import Collection
from itertools import repeat
from pathlib import Path

import numpy as np

from qa import __version__
from qa.engine.coadd import Rows, add_errors, coadd, flatten_rows, row_statistics
from qa.engine.grouping import ProductPlan, plan_products, product_filename
from qa.engine.prefilter import BAD_SEGMENTS, active_filters, prefilter
from qa.errors import InputError
from qa.io.model import Dataset
from qa.io.reader import find_spectra, read_dataset, validate_dataset
from qa.results import EngineResult, Product, Rejection, RowStat, product_key

ENGINE_NAME = "native"


def expand_inputs(inputs: str | Path | list) -> list[Path]:
    """A directory becomes its ``*_x1d.fits``/``*_sx1.fits`` files; a list is taken as given."""
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        return find_spectra(path) if path.is_dir() else [path]
    return [Path(p) for p in inputs]


def load_datasets(paths: list[Path]) -> tuple[list[Dataset], dict[str, str]]:
    """Read and validate every file; a bad file is reported, never fatal for the others."""
    datasets, errors = [], {}
    for path in paths:
        try:
            ds = read_dataset(path)
            validate_dataset(ds)
        except InputError as exc:
            errors[path.name] = exc.problem
            continue
        datasets.append(ds)
    return datasets, errors


def run(inputs: str | Path | list, *, threshold: float = -50.0, snrmax: float = 20.0,
        keyword_filtering: bool = True, cross_program: bool = False,
        products: Collection[str] | None = None) -> EngineResult:
    """Run HASP's pre-filters, grouping, co-add and flux filter on ``inputs``.

    Parameters
    ----------
    inputs : path-like or list of path-like
        A directory of ``x1d``/``sx1`` files, or the files themselves.
    threshold, snrmax : float
        HASP's ``-t`` and ``-s`` (defaults -50 and 20).
    keyword_filtering : bool
        ``False`` is HASP's ``-k`` (only PRISM is filtered).
    cross_program : bool
        HASP's ``-x``.
    products : collection of str, optional
        Compute only the products with these keys (``Product.key``); all by default.

    Returns
    -------
    EngineResult
    """
    paths = expand_inputs(inputs)
    datasets, errors = load_datasets(paths)
    filters = active_filters(keyword_filtering)
    kept, dropped = prefilter(datasets, filters)
    result = EngineResult(engine=ENGINE_NAME, engine_version=f"hasp-qa {__version__}",
                          threshold=float(threshold), snrmax=float(snrmax),
                          inputs=[p.name for p in paths], keyword_filtered=dropped,
                          input_errors=errors)
    result.log += [f"File {k.file} removed from products because {k.reason}" for k in dropped]
    plans = plan_products(kept, cross_program=cross_program,
                          moving_target_filter="MOVINGTARGET" in filters)
    plans = [p for p in plans if products is None or plan_key(p) in products]
    pool = RowsPool(plans)
    for plan in plans:
        result.products.append(run_product(plan, float(threshold), float(snrmax), result.log,
                                           pool.rows(plan)))
    return result


class RowsPool:
    """The rows of a run's products, each exposure's quantities computed once.

    The files of all products of one setting (mode and target) are stacked
    together (:func:`~qa.engine.coadd.flatten_rows`); a product takes its rows
    from that stack, as views when its files are consecutive there (a visit's
    within its program's).
    """

    def __init__(self, plans: list[ProductPlan]) -> None:
        self._plans = plans
        self._stacks: dict[tuple, tuple[Rows | None, dict[int, int]]] = {}

    @staticmethod
    def _setting(plan: ProductPlan) -> tuple:
        return plan.instrument, plan.grating, plan.detector, plan.target

    def rows(self, plan: ProductPlan) -> Rows:
        """``plan``'s rows in its member order."""
        key = self._setting(plan)
        if key not in self._stacks:
            members = {id(d): d for p in self._plans if self._setting(p) == key for d in p.datasets}
            files = sorted(members.values(), key=lambda d: str(d.path))
            stack = None
            # One stack holds one dtype per column: files whose columns differ (FLUX stored as
            # float64 in one, say) are stacked per product, so that a product's arithmetic
            # never takes another product's dtype.
            if len({_column_dtypes(d) for d in files}) == 1:
                try:
                    stack = flatten_rows(files, plan.instrument, plan.detector, _dropped(plan))
                except Exception:  # noqa: BLE001 - then each product stacks its own files
                    stack = None
            self._stacks[key] = stack, {id(d): i for i, d in enumerate(files)}
        stack, position = self._stacks[key]
        at = [position[id(d)] for d in plan.datasets]
        if stack is None or at != sorted(at):
            return flatten_rows(plan.datasets, plan.instrument, plan.detector, _dropped(plan))
        return stack.subset(at)


def _column_dtypes(ds: Dataset) -> frozenset:
    return frozenset((e.wavelength.dtype.str, e.flux.dtype.str, e.error.dtype.str)
                     for e in ds.exposures)


def _dropped(plan: ProductPlan) -> tuple[str, ...]:
    return BAD_SEGMENTS.get(f"{plan.instrument}/{plan.grating}", ())


def plan_key(plan: ProductPlan) -> str:
    """The ``Product.key`` the plan's product will have."""
    return product_key(plan.program, plan.target, f"{plan.instrument}/{plan.grating}", plan.level,
                       plan.visit)


def dead_extensions(rows: Rows, names: list[str]) -> list[str]:
    """Findings for SCI extensions whose co-added rows have no good pixel.

    HASP keeps such a file as an input (its pixels still shape the output grid,
    its other extensions are co-added and tested); the user should still see
    the failed exposure, e.g. ``o4vt08010_x1d.fits[SCI,2]: no good pixel (every DQ flagged)``.
    """
    alive: dict[tuple[str, int], bool] = {}
    for r, ok in enumerate(rows.row_ngood > 0):
        key = (names[rows.row_file[r]], rows.row_exp[r].extver)
        alive[key] = alive.get(key, False) or bool(ok)
    return [f"{name}[SCI,{ext}]: no good pixel (every DQ flagged)"
            for (name, ext), ok in alive.items() if not ok]


def run_product(plan: ProductPlan, threshold: float, snrmax: float, log: list[str],
                rows: Rows | None = None) -> Product:
    """Co-add one product, culling files with HASP's flux filter until none is removed.

    ``rows`` are the plan's rows when a :class:`RowsPool` holds them; by default
    they are stacked here.
    """
    if rows is None:
        rows = flatten_rows(plan.datasets, plan.instrument, plan.detector, _dropped(plan))
    names = [d.name for d in plan.datasets]
    keep = np.arange(len(plan.datasets))
    product = Product(level=plan.level, program=plan.program, visit=plan.visit,
                      instrument=plan.instrument, grating=plan.grating, detector=plan.detector,
                      target=plan.target, filename="", threshold=threshold, snrmax=snrmax,
                      inputs=names, kept=[],
                      findings=dead_extensions(rows, names))
    co = None
    iteration = 0
    while keep.size:
        iteration += 1
        active = rows.rows_of(keep)
        if not active.any():
            break
        co = coadd(rows, active, plan.instrument, plan.detector)
        if co is None:
            log.append(f"{product.key}: no good data, skipping")
            break
        stats = row_statistics(rows, active, co, snrmax)
        at = np.flatnonzero(active)
        exps = [rows.row_exp[r] for r in at]
        # Plain Python values, positionally: one RowStat per row and iteration adds up at scale.
        product.row_stats += map(
            RowStat, [names[f] for f in rows.row_file[at].tolist()], [e.extver for e in exps],
            [e.row_labels[i] for e, i in zip(exps, rows.row_index[at].tolist())],
            repeat(iteration), stats.n[at].tolist(), stats.median_deviation[at].tolist(),
            stats.scaled_median[at].tolist(), rows.row_good_min[at].tolist(),
            rows.row_good_max[at].tolist())
        bad = np.flatnonzero(active & (stats.scaled_median < threshold))
        if not bad.size:
            break
        culled = list(dict.fromkeys(rows.row_file[bad]))
        for f in culled:
            mine = bad[rows.row_file[bad] == f]
            labels = [rows.row_exp[r].row_labels[rows.row_index[r]] for r in mine]
            product.rejected.append(Rejection(file=names[f], iteration=iteration, rows=labels,
                                              scaled_medians=[float(v) for v in stats.scaled_median[mine]]))
            log.extend(f"{lab} in file {names[f]} has scaled median = {v}"
                       for lab, v in zip(labels, stats.scaled_median[mine]))
            log.append(f"Removing file {names[f]} from product {product.key}")
        remaining = np.setdiff1d(keep, culled)
        if not remaining.size and plan.level == "cross-program":
            # Quirk "cross-program-all-rejected": hasp's processmode returns the last
            # co-add, of the files it has just removed, and -x writes it.
            product.findings.append(
                "HASP writes this cross-program product from files its flux filter rejected")
            break
        keep, co = remaining, None
    product.iterations = iteration
    if co is not None:
        product.kept = [names[i] for i in keep]
        product.filename = product_filename(plan, [plan.datasets[i] for i in keep])
        co = add_errors(rows, co, plan.instrument, plan.detector)
        (product.wavelength, product.flux, product.error, product.snr,
         product.eff_exptime) = co.trimmed()
    return product
