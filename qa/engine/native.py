"""The native engine: HASP's decisions from vectorized numpy, reading each file once."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from qa import __version__
from qa.engine.coadd import Rows, coadd, flatten_rows, row_statistics
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
    for plan in plans:
        if products is not None and plan_key(plan) not in products:
            continue
        result.products.append(run_product(plan, float(threshold), float(snrmax), result.log))
    return result


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


def run_product(plan: ProductPlan, threshold: float, snrmax: float, log: list[str]) -> Product:
    """Co-add one product, culling files with HASP's flux filter until none is removed."""
    drop = BAD_SEGMENTS.get(f"{plan.instrument}/{plan.grating}", ())
    rows = flatten_rows(plan.datasets, plan.instrument, plan.detector, drop)
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
        for r in np.flatnonzero(active):
            exp = rows.row_exp[r]
            product.row_stats.append(RowStat(
                file=names[rows.row_file[r]], extver=exp.extver,
                row=exp.row_labels[rows.row_index[r]], iteration=iteration, n=int(stats.n[r]),
                median_deviation=float(stats.median_deviation[r]),
                scaled_median=float(stats.scaled_median[r]),
                wave_min=float(rows.row_good_min[r]), wave_max=float(rows.row_good_max[r])))
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
        (product.wavelength, product.flux, product.error, product.snr,
         product.eff_exptime) = co.trimmed()
    return product
