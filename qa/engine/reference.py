"""The reference engine: the installed ``hasp`` run end to end, as ``swrapper`` runs it.

:func:`run` stages the inputs in a scratch directory (symbolic links; ``.gz``
files decompressed, because HASP only globs ``*_x1d.fits``/``*_sx1.fits``) and
calls ``hasp.wrapper.main`` on it: HASP's own file discovery, keyword
pre-filters, grouping, product loop, flux filter, naming and writing. What
``main`` prints becomes the result's log and is parsed for the product context
(level, program/visit, target) and keyword-filter reasons. What HASP only keeps
in memory (every row's N and median per iteration, the float64 co-add arrays
before they are written as float32) is recorded by *taps*: wrappers around
``SegmentList.import_data``, ``calculate_statistics``, ``write``,
``wrapper.prefilter`` and ``wrapper.analyse_result`` that call the original and
note its arguments and return value, changing nothing.

Only one step is ours: files our reader refuses (not FITS, truncated, NaN in
good pixels, ...) are reported as input errors and left out of the staged
directory, as they would make ``swrapper`` crash or co-add garbage.
"""
from __future__ import annotations

import ast
import contextlib
import gzip
import io
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.engine.grouping import product_keys_of
from qa.engine.native import load_datasets
from qa.io.reader import find_spectra
from qa.results import EngineResult, KeywordFilter, Product, Rejection, RowStat

ENGINE_NAME = "hasp"

_REMOVED = re.compile(r"^File (\S+) removed from p\w+ because (.*)$")
# Map HASP's log reasons back to its PREFILTERS names.
_REASON_FILTER = (("EXPFLAG", "EXPFLAG"), ("EXPTIME (", "PLANNEDVSACTUAL"),
                  ("EXPTIME", "ZEROEXPTIME"), ("FGSLOCK", "NOTFINELOCK"),
                  ("POSTARG1", "POSTARG1"), ("POSTARG2", "POSTARG2"),
                  ("PATTERN1", "DITHERPERPENDICULARTOSLIT"), ("P1_PURPS", "MOSAICPURPOSE"),
                  ("OPT_ELEM", "PRISM"), ("COS APERTURE", "COSBOA"), ("TARGNAME", "EXCLUDEWAVE"))
_LEVELS = {"Looping over visits": "visit", "Looping over proposals": "program",
           "Creating these single grating products for each lifetime position": "cross-program",
           # -x then co-adds per grating again for abutment only; those are not written.
           "Creating these single grating products that will be used in the abutted products": ""}
_TARGET = re.compile(r"^Processing target (.*) in (?:visit|proposal) ")
_CROSS_TARGET = re.compile(r"^Creating cross-program products for target (.*)$")


def hasp_version() -> str:
    import hasp
    import ullyses
    return f"hasp {hasp.__version__}, ullyses {ullyses.__version__}"


def run(inputs: str | Path | list, *, threshold: float = -50.0, snrmax: float = 20.0,
        keyword_filtering: bool = True, cross_program: bool = False,
        products: Collection[str] | None = None) -> EngineResult:
    """Same contract as :func:`qa.engine.native.run`, computed by ``hasp.wrapper.main``.

    ``products`` filters the result: HASP makes every product of the directory anyway.
    """
    from hasp import wrapper

    with tempfile.TemporaryDirectory(prefix="hasp-qa-ref-") as tmp:
        stage, names, paths, errors, datasets = _stage(inputs, Path(tmp))
        outdir = Path(tmp) / "products"
        rec = _Recorder(names)
        # HASP's divisions by zero on flagged pixels and astropy's notes on the long
        # header cards it writes are not news to the user.
        with rec.tapped(wrapper), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapper.main(str(stage), str(outdir), clobber=True, threshold=float(threshold),
                         snrmax=float(snrmax), no_keyword_filtering=not keyword_filtering,
                         cross_program=cross_program)
        result = EngineResult(engine=ENGINE_NAME, engine_version=hasp_version(),
                              threshold=float(threshold), snrmax=float(snrmax),
                              inputs=[p.name for p in paths], input_errors=errors,
                              log=rec.lines())
        result.keyword_filtered = rec.keyword_filtered(datasets)
        for run_ in rec.products:
            if not run_.level:
                continue  # -x co-adds made only for the abutted product
            product = run_.to_product(float(threshold), float(snrmax), outdir)
            if products is None or product.key in products:
                result.products.append(product)
    return result


def _stage(inputs: str | Path | list, tmp: Path
           ) -> tuple[Path, dict[str, str], list[Path], dict[str, str], dict[str, object]]:
    """Link the readable inputs into a directory for HASP.

    A directory is staged whole (dot-files and other files included, so that
    HASP's own glob decides what an input is); a list of files is staged as given.
    The staged directory has the inputs' directory name: ``-x`` names its
    products after it.

    Returns
    -------
    stage, names (staged name -> input name), input paths, input errors, datasets by input name
    """
    if isinstance(inputs, (str, Path)) and Path(inputs).is_dir():
        directory = Path(inputs)
        paths = find_spectra(directory)
        others = [p for p in directory.iterdir() if p.is_file() and p not in set(paths)]
    else:
        paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
        directory = paths[0].parent if paths else Path(".")
        others = []
    stage = tmp / (directory.resolve().name or "inputs")
    stage.mkdir()
    names: dict[str, str] = {}
    datasets: dict[str, object] = {}
    loaded, errors = load_datasets(paths)   # the files both engines refuse, by the same rules
    for ds in loaded:
        path = Path(ds.path)
        staged = path.name[:-3] if path.name.endswith(".gz") else path.name
        if staged in names:
            errors[path.name] = f"same name as {names[staged]} once decompressed: HASP reads one directory"
            continue
        names[staged] = path.name
        datasets[path.name] = ds
        _link_or_decompress(path, stage / staged)
    for path in others:
        if not path.name.endswith(".gz") and path.name not in names:
            os.symlink(path.resolve(), stage / path.name)
    return stage, names, paths, errors, datasets


def _link_or_decompress(src: Path, dest: Path) -> None:
    if src.name.endswith(".gz"):
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        os.symlink(src.resolve(), dest)


@dataclass
class _Iteration:
    files: list[str]                # staged paths HASP imported
    segments: object = None         # the HASP_*SegmentList
    stats: tuple | None = None      # calculate_statistics' return value
    culled: list[str] = field(default_factory=list)


@dataclass
class _ProductRun:
    """One single-grating product as HASP computed it, iteration by iteration."""

    level: str
    context: object                 # (program, visit) for visits, program for proposals
    target: str
    names: dict[str, str]           # staged file name -> input file name
    iterations: list[_Iteration] = field(default_factory=list)
    written: str = ""               # the cspec file HASP wrote
    final: object = None            # the SegmentList it wrote

    def _name(self, staged_path: str) -> str:
        base = os.path.basename(staged_path)
        return self.names.get(base, base)

    def to_product(self, threshold: float, snrmax: float, outdir: Path) -> Product:
        first = self.iterations[0].segments
        headers = first.primary_headers
        if self.level == "visit":
            program, visit = int(self.context[0]), str(self.context[1])
        elif self.level == "program":
            program, visit = int(self.context), ""
        else:
            program, visit = min(int(h["PROPOSID"]) for h in headers), ""
        product = Product(level=self.level, program=program, visit=visit,
                          instrument=first.instrument, grating=first.grating,
                          detector=str(first.detector), target=self.target, filename="",
                          threshold=threshold, snrmax=snrmax,
                          inputs=[self._name(f) for f in self.iterations[0].files], kept=[],
                          iterations=len(self.iterations),
                          findings=_dead_extensions(first, self._name))
        for number, it in enumerate(self.iterations, start=1):
            if it.stats is None:
                continue  # "No good data": the co-add had no good pixel
            product.row_stats += _row_stats(it, number, self._name)
            product.rejected += _rejections(it, number, threshold, self._name)
        if self.written and self.iterations[-1].culled:  # only -x writes after removing all
            product.findings.append(
                "HASP writes this cross-program product from files its flux filter rejected")
        if self.written:
            if not (outdir / self.written).is_file():
                raise RuntimeError(f"HASP reported writing {self.written} but the file is absent")
            prod = self.final
            product.filename = self.written
            product.kept = [self._name(f) for f in self.iterations[-1].files]
            good = np.nonzero(prod.output_exptime != 0.0)[0]
            sl = slice(good[0], good[-1] + 1)
            product.wavelength = np.asarray(prod.output_wavelength[sl], dtype=float)
            product.flux = np.asarray(prod.output_flux[sl], dtype=float)
            product.error = np.asarray(prod.output_errors[sl], dtype=float)
            product.snr = np.asarray(prod.signal_to_noise[sl], dtype=float)
            product.eff_exptime = np.asarray(prod.output_exptime[sl], dtype=float)
        return product


class _Recorder:
    """HASP's stdout plus what the taps saw, in the order it happened."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.out = io.StringIO()
        self._read = 0
        self.level = ""
        self.context: object = None
        self.target = ""
        self.gratings_seen = 0       # "Processing grating ..." lines: one per product
        self._product_at = -1
        self.products: list[_ProductRun] = []
        self.globbed: list[str] = []
        self.prefiltered: list[str] = []

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def _follow_log(self) -> None:
        """Read what HASP printed since the last tap: which product it is working on."""
        text = self.out.getvalue()
        new, self._read = text[self._read:], len(text)
        for line in new.splitlines():
            if line in _LEVELS:
                self.level = _LEVELS[line]
            elif line.startswith("Processing product "):
                self.context = ast.literal_eval(line[len("Processing product "):])
            elif (m := _TARGET.match(line)) or (m := _CROSS_TARGET.match(line)):
                self.target = m.group(1)
            elif line.startswith("Processing grating "):
                self.gratings_seen += 1

    @contextlib.contextmanager
    def tapped(self, wrapper) -> Iterator[None]:
        """Wrap HASP's functions for the duration of one ``main`` call, stdout captured."""
        rec = self
        cls = wrapper.HASP_SegmentList
        originals = {"import_data": cls.import_data, "calculate_statistics": cls.calculate_statistics,
                     "write": cls.write}
        prefilter, analyse = wrapper.prefilter, wrapper.analyse_result

        def import_data(seg, file_list):
            rec._follow_log()
            if rec.gratings_seen != rec._product_at:
                rec._product_at = rec.gratings_seen
                rec.products.append(_ProductRun(rec.level, rec.context, rec.target, rec.names))
            current = rec.products[-1]
            current.iterations.append(_Iteration(files=list(file_list), segments=seg))
            return originals["import_data"](seg, file_list)

        def calculate_statistics(seg, *args, **kwargs):
            stats = originals["calculate_statistics"](seg, *args, **kwargs)
            rec._iteration(seg).stats = stats
            return stats

        def analyse_result(results, threshold=-50):
            culled = analyse(results, threshold=threshold)
            rec.products[-1].iterations[-1].culled = list(culled)
            return culled

        def write(seg, filename, overwrite=False, level=""):
            if level not in (1, 3, 5):
                # Abutted products (levels 2, 4, 6) are not checked here. HASP can crash
                # writing one (e.g. IndexError on an abutment without good pixels), which
                # would abort every later product: log it and let HASP go on.
                try:
                    return originals["write"](seg, filename, overwrite=overwrite, level=level)
                except Exception as exc:
                    print(f"hasp-qa: HASP failed to write the abutted product "
                          f"{os.path.basename(filename)}: {type(exc).__name__}: {exc}")
                    return None
            value = originals["write"](seg, filename, overwrite=overwrite, level=level)
            if rec.level:  # -x also co-adds per grating for abutment only, never written
                current = rec.products[-1]
                if current.iterations[-1].segments is seg:
                    current.written, current.final = os.path.basename(filename), seg
            return value

        def prefilter_tap(file_list, filters):
            rec.globbed = list(file_list)
            rec.prefiltered = prefilter(file_list, filters)
            return rec.prefiltered

        try:
            for name, fn in (("import_data", import_data),
                             ("calculate_statistics", calculate_statistics), ("write", write)):
                setattr(cls, name, fn)
            wrapper.prefilter, wrapper.analyse_result = prefilter_tap, analyse_result
            with contextlib.redirect_stdout(self.out):
                yield
        finally:
            for name, fn in originals.items():
                setattr(cls, name, fn)
            wrapper.prefilter, wrapper.analyse_result = prefilter, analyse

    def _iteration(self, seg) -> _Iteration:
        it = self.products[-1].iterations[-1]
        if it.segments is not seg:
            raise RuntimeError("HASP computed statistics of a product it did not import last")
        return it

    def keyword_filtered(self, datasets: dict) -> list[KeywordFilter]:
        reasons = {}
        for line in self.lines():
            if m := _REMOVED.match(line):
                reasons[m.group(1)] = m.group(2)
        found = []
        kept = set(self.prefiltered)
        for path in self.globbed:
            if path in kept:
                continue
            # HASP drops a non-STIS file with POSTARG2 != 0 without printing why.
            reason = reasons.get(path, "POSTARG2 != 0 (dropped without a message)")
            name = next((f for prefix, f in _REASON_FILTER if reason.startswith(prefix)), "POSTARG2")
            original = self.names.get(os.path.basename(path), os.path.basename(path))
            found.append(KeywordFilter(file=original, filter=name, reason=reason,
                                       product_keys=product_keys_of(datasets[original])
                                       if original in datasets else []))
        return found


def _extvers(prod) -> list[int]:
    """EXTVER of each member: rows of one extension share its table (``FITS_record.array``)."""
    tables: dict[int, int] = {}
    for seg in prod.members:
        tables.setdefault(id(seg.data.array), len(tables))
    if len(tables) != len(prod.first_headers):
        raise RuntimeError("cannot match HASP's members to their SCI extensions")
    extver = [int(h.get("EXTVER", 1)) for h in prod.first_headers]
    return [extver[tables[id(seg.data.array)]] for seg in prod.members]


def _dead_extensions(prod, name_of) -> list[str]:
    """Extensions whose rows HASP co-adds have no good pixel (as ``qa.engine.native`` reports)."""
    alive: dict[tuple[str, int], bool] = {}
    for seg, ext in zip(prod.members, _extvers(prod)):
        good = bool(((seg.data["dq"] & seg.sdqflags) == 0).any())
        key = (name_of(seg.filename), ext)
        alive[key] = alive.get(key, False) or good
    return [f"{name}[SCI,{ext}]: no good pixel (every DQ flagged)"
            for (name, ext), ok in alive.items() if not ok]


def _label(seg) -> str:
    return f"order {seg.spectral_order}" if seg.instrument == "STIS" else str(seg.name)


def _row_stats(it: _Iteration, iteration: int, name_of) -> list[RowStat]:
    segments, _rownums, npts, _mean, median = it.stats[:5]
    prod = it.segments
    single = len(prod.members) == 1
    extver_of = {id(seg): ext for seg, ext in zip(prod.members, _extvers(prod))}
    stats = []
    for i, seg in enumerate(segments):
        good = (seg.data["dq"] & seg.sdqflags) == 0
        wl = seg.data["wavelength"][good]
        # For a single member HASP reports len(row record) (its column count) as N: not a count.
        n = 0 if single else int(npts[i])
        stats.append(RowStat(file=name_of(seg.filename), extver=extver_of[id(seg)],
                             row=_label(seg), iteration=iteration, n=n,
                             median_deviation=float(median[i]),
                             scaled_median=float(median[i] * np.sqrt(npts[i])) if not single else 0.0,
                             wave_min=float(wl.min()) if wl.size else float("nan"),
                             wave_max=float(wl.max()) if wl.size else float("nan")))
    return stats


def _rejections(it: _Iteration, iteration: int, threshold: float, name_of) -> list[Rejection]:
    segments, npts, median = it.stats[0], it.stats[2], it.stats[4]
    scaled = median * np.sqrt(npts)
    out = []
    for f in it.culled:
        rows = [i for i, s in enumerate(segments) if s.filename == f and scaled[i] < threshold]
        out.append(Rejection(file=name_of(f), iteration=iteration,
                             rows=[_label(segments[i]) for i in rows],
                             scaled_medians=[float(scaled[i]) for i in rows]))
    return out
