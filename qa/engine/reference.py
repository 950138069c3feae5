"""The reference engine: the installed ``hasp``/``ullyses`` code, driven in-process.

HASP's own functions do the work (``prefilter``, ``check_for_moving_targets``,
the ``HASP_*SegmentList`` classes, ``analyse_result``, ``cull_files``); this
module only replays the loop of ``hasp.wrapper.create_products`` so that it can
collect what ``swrapper`` prints but does not return. HASP's printing goes to
the result's log, not the terminal.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from qa.engine.grouping import ProductPlan, plan_products, product_filename, product_keys_of
from qa.engine.native import expand_inputs, load_datasets
from qa.results import EngineResult, KeywordFilter, Product, Rejection, RowStat

ENGINE_NAME = "hasp"

_REMOVED = re.compile(r"^File (\S+) removed from p\w+ because (.*)$")
# Map HASP's log reasons back to its PREFILTERS names.
_REASON_FILTER = (("EXPFLAG", "EXPFLAG"), ("EXPTIME (", "PLANNEDVSACTUAL"),
                  ("EXPTIME", "ZEROEXPTIME"), ("FGSLOCK", "NOTFINELOCK"),
                  ("POSTARG1", "POSTARG1"), ("POSTARG2", "POSTARG2"),
                  ("PATTERN1", "DITHERPERPENDICULARTOSLIT"), ("P1_PURPS", "MOSAICPURPOSE"),
                  ("OPT_ELEM", "PRISM"), ("COS APERTURE", "COSBOA"), ("TARGNAME", "EXCLUDEWAVE"))


def hasp_version() -> str:
    import hasp
    import ullyses
    return f"hasp {hasp.__version__}, ullyses {ullyses.__version__}"


def run(inputs: str | Path | list, *, threshold: float = -50.0, snrmax: float = 20.0,
        keyword_filtering: bool = True, cross_program: bool = False) -> EngineResult:
    """Same contract as :func:`qa.engine.native.run`, computed by the archive's code."""
    from hasp import wrapper

    paths = expand_inputs(inputs)
    # Unreadable files would crash swrapper; both engines exclude them the same way.
    datasets, errors = load_datasets(paths)
    by_path = {str(d.path): d for d in datasets}
    filters = list(wrapper.PREFILTERS) if keyword_filtering else ["PRISM"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        kept_paths = wrapper.prefilter(sorted(by_path), filters=filters)
    dropped = _keyword_filtered(out.getvalue(), sorted(set(by_path) - set(kept_paths)))
    for k, path in zip(dropped, sorted(set(by_path) - set(kept_paths))):
        k.product_keys = product_keys_of(by_path[path])
    result = EngineResult(engine=ENGINE_NAME, engine_version=hasp_version(),
                          threshold=float(threshold), snrmax=float(snrmax),
                          inputs=[p.name for p in paths], keyword_filtered=dropped,
                          input_errors=errors)
    plans = plan_products([by_path[p] for p in kept_paths], cross_program=cross_program,
                          moving_target_filter="MOVINGTARGET" in filters)
    for plan in plans:
        # HASP divides by zero flux on flagged pixels; its warnings are not news to the user.
        with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
            result.products.append(_run_product(wrapper, plan, float(threshold), float(snrmax)))
    result.log = out.getvalue().splitlines()
    return result


def _keyword_filtered(log: str, dropped_paths: list[str]) -> list[KeywordFilter]:
    reasons = {}
    for line in log.splitlines():
        m = _REMOVED.match(line)
        if m:
            reasons[m.group(1)] = m.group(2)
    found = []
    for path in dropped_paths:
        # HASP drops a COS file with POSTARG2 != 0 without printing why.
        reason = reasons.get(path, "POSTARG2 != 0 (dropped without a message)")
        name = next((f for prefix, f in _REASON_FILTER if reason.startswith(prefix)), "POSTARG2")
        found.append(KeywordFilter(file=Path(path).name, filter=name, reason=reason))
    return found


def _segment_list(wrapper, plan: ProductPlan):
    if plan.instrument == "COS":
        return wrapper.HASP_COSSegmentList(None, inpath=".")
    if plan.detector == "CCD":
        return wrapper.HASP_CCDSegmentList(None, inpath=".")
    return wrapper.HASP_STISSegmentList(None, inpath=".")


def _run_product(wrapper, plan: ProductPlan, threshold: float, snrmax: float) -> Product:
    files = [str(d.path) for d in plan.datasets]
    names = {str(d.path): d.name for d in plan.datasets}
    product = Product(level=plan.level, program=plan.program, visit=plan.visit,
                      instrument=plan.instrument, grating=plan.grating, detector=plan.detector,
                      target=plan.target, filename="", threshold=threshold, snrmax=snrmax,
                      inputs=[names[f] for f in files], kept=[])
    prod = None
    iteration = 0
    while files:
        iteration += 1
        prod = _segment_list(wrapper, plan)
        prod.import_data(files)
        prod.snrmax = snrmax
        if not prod.members:
            prod = None
            break
        prod.create_output_wavelength_grid()
        prod.coadd()
        if prod.first_good_wavelength is None:
            prod = None
            break
        result = prod.calculate_statistics()
        product.row_stats += _row_stats(prod, result, iteration, names)
        culled = wrapper.analyse_result(result, threshold=threshold)
        if not culled:
            break
        _record_rejections(product, prod, result, culled, threshold, iteration, names)
        wrapper.cull_files(culled, files)
        prod = None
    product.iterations = iteration
    if prod is not None:
        product.kept = [names[f] for f in files]
        product.filename = product_filename(plan, [d for d in plan.datasets if str(d.path) in files])
        good = np.nonzero(prod.output_exptime != 0.0)[0]
        sl = slice(good[0], good[-1] + 1)
        product.wavelength = np.asarray(prod.output_wavelength[sl], dtype=float)
        product.flux = prod.output_flux[sl].copy()
        product.error = prod.output_errors[sl].copy()
        product.snr = prod.signal_to_noise[sl].copy()
        product.eff_exptime = prod.output_exptime[sl].copy()
    return product


def _member_extvers(prod) -> list[int]:
    # Members come file by file, extension by extension, rows in order; a new
    # extension of the same file starts where the row number does not increase.
    extvers, last_file, last_row, ext = [], None, -1, 0
    for seg in prod.members:
        if seg.filename != last_file:
            ext = 1
        elif seg.rownum <= last_row:
            ext += 1
        extvers.append(ext)
        last_file, last_row = seg.filename, seg.rownum
    return extvers


def _label(seg) -> str:
    return f"order {seg.spectral_order}" if seg.instrument == "STIS" else str(seg.name)


def _row_stats(prod, result, iteration: int, names: dict) -> list[RowStat]:
    segments, _rownums, npts, _mean, median = result[:5]
    single = len(prod.members) == 1
    extver_of = {id(seg): ext for seg, ext in zip(prod.members, _member_extvers(prod))}
    stats = []
    for i, seg in enumerate(segments):
        good = (seg.data["dq"] & seg.sdqflags) == 0
        wl = seg.data["wavelength"][good]
        # For a single member HASP reports len(row record) (its column count) as N: not a count.
        n = 0 if single else int(npts[i])
        stats.append(RowStat(file=names[seg.filename], extver=extver_of[id(seg)],
                             row=_label(seg), iteration=iteration, n=n,
                             median_deviation=float(median[i]),
                             scaled_median=float(median[i] * np.sqrt(npts[i])) if not single else 0.0,
                             wave_min=float(wl.min()) if wl.size else float("nan"),
                             wave_max=float(wl.max()) if wl.size else float("nan")))
    return stats


def _record_rejections(product: Product, prod, result, culled: list[str], threshold: float,
                       iteration: int, names: dict) -> None:
    segments, npts, median = result[0], result[2], result[4]
    scaled = median * np.sqrt(npts)
    for f in culled:
        rows = [i for i, s in enumerate(segments) if s.filename == f and scaled[i] < threshold]
        product.rejected.append(Rejection(file=names[f], iteration=iteration,
                                          rows=[_label(segments[i]) for i in rows],
                                          scaled_medians=[float(scaled[i]) for i in rows]))
