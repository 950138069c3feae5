"""Scale a product's inputs to a common median flux, co-add again, and measure the SNR gain.

Scaled copies multiply FLUX and ERROR by the factor and leave NET and GROSS as
they are. That is deliberate: HASP weights a pixel by EXPTIME * NET / FLUX, so
with NET untouched a copy scaled up by 1/a (it collected a fraction a of the
light) gets the weight a * sensitivity * EXPTIME, which is the inverse variance
of its rescaled flux; scaling NET as well would give every copy equal weight and
throw away exactly the information that the fainter exposure is noisier. ERROR
scales with FLUX so that each pixel's SNR, and HASP's deviation statistic, keep
their meaning. Originals are only read; copies carry SCALEFAC and HISTORY.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from qa import __version__
from qa.io.model import Dataset
from qa.io.reader import good_pixel_mask
from qa.results import EngineResult, Product, Remediation, SnrGain

REFERENCE_RULES = ("brightest", "median", "first")


class NotPossible(Exception):
    """Remediation cannot be computed; the message says why."""


def exposure_key(ds: Dataset, extver: int) -> str:
    """Name of one exposure in factor tables: the file, plus the extension when it has several."""
    return ds.name if len(ds.exposures) == 1 else f"{ds.name}[SCI,{extver}]"


def exposure_medians(datasets: list[Dataset]) -> dict[str, float]:
    """Median FLUX over the good pixels of each exposure (HASP's DQ mask)."""
    out = {}
    for ds in datasets:
        for exp in ds.exposures:
            good = good_pixel_mask(exp, ds.instrument, ds.detector) & np.isfinite(exp.flux)
            out[exposure_key(ds, exp.extver)] = float(np.median(exp.flux[good])) if good.any() \
                else float("nan")
    return out


def scale_factors(medians: dict[str, float], rule: str = "brightest") -> tuple[str, dict[str, float]]:
    """Factors that bring every exposure to the median flux the reference rule picks.

    Parameters
    ----------
    medians : dict
        Exposure name -> good-pixel median flux.
    rule : {"brightest", "median", "first"}
        The reference rule: scale to the brightest exposure (as the tutorial does),
        to the median of the medians, or to the first exposure.

    Returns
    -------
    scaled_to : str
        The exposure scaled to ("median of medians" for that rule).
    factors : dict
        Exposure name -> factor (target median / own median).

    Raises
    ------
    NotPossible
        A single exposure, or a median that is NaN, zero or negative.
    """
    if rule not in REFERENCE_RULES:
        raise NotPossible(f"unknown reference rule {rule!r} (expected one of {REFERENCE_RULES})")
    if len(medians) < 2:
        raise NotPossible("a single exposure: there is nothing to scale it against")
    bad = {k: v for k, v in medians.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        listing = ", ".join(f"{k} (median {v:.3g})" for k, v in bad.items())
        raise NotPossible(f"median flux is not positive for {listing}")
    if rule == "brightest":
        scaled_to = max(medians, key=medians.get)
        target = medians[scaled_to]
    elif rule == "first":
        scaled_to = next(iter(medians))
        target = medians[scaled_to]
    else:
        scaled_to, target = "median of medians", float(np.median(list(medians.values())))
    return scaled_to, {k: target / v for k, v in medians.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fits_text(text: str) -> str:
    """``text`` as a FITS header value: printable ASCII, the rest percent-encoded (RFC 3986).

    FITS values hold printable ASCII only; a path with non-ASCII characters or a newline
    would make astropy refuse the whole file. ``urllib.parse.unquote`` gives the text back.
    """
    return quote(text, safe="/ !\"#$&'()*+,:;<=>?@[]^_`{|}~-.")


def write_scaled_copy(ds: Dataset, factors: dict[str, float], outdir: Path, note: str) -> Path:
    """Write ``ds`` with FLUX and ERROR of each SCI extension scaled; returns the new path."""
    outdir.mkdir(parents=True, exist_ok=True)
    dest = outdir / ds.name
    from astropy.io import fits

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # memmap=False reads the data into memory: scaling it in place leaves the input untouched.
    with fits.open(ds.path, mode="readonly", memmap=False) as out:
        for hdu in (h for h in out[1:] if h.header.get("EXTNAME") == "SCI"):
            factor = factors[exposure_key(ds, int(hdu.header.get("EXTVER", 1)))]
            for name in ("FLUX", "ERROR"):
                column = hdu.data[name]
                if column.dtype.kind != "f":
                    raise ValueError(f"{name} is stored as {column.dtype.name} (SCI extension "
                                     f"{hdu.header.get('EXTVER', 1)}), which cannot hold scaled values")
                column *= np.float32(factor)
            hdu.header["SCALEFAC"] = (factor, "hasp-qa: FLUX and ERROR multiplied by this")
        primary = out[0].header
        # Keywords, not HISTORY text, so that provenance survives FITS line wrapping; long
        # values (CONTINUE cards) get no comment because astropy would truncate it.
        primary["QASRC"] = fits_text(str(ds.path.resolve()))   # the file these data were scaled from
        primary["QASRCSHA"] = _sha256(ds.path)                 # its sha256
        primary["QAREF"] = fits_text(note)                     # the scaling reference
        primary["HISTORY"] = f"hasp-qa {__version__} {stamp}: FLUX and ERROR scaled by SCALEFAC"
        out.writeto(dest, overwrite=True)
    return dest


def _first_line(exc: Exception) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return " ".join(lines[:4]) if lines else type(exc).__name__


def relative_snr(original: Product, remediated: Product) -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths and SNR_new / SNR_old over the original bins with SNR_old > 0.

    The grids of the two co-adds may differ (range, bins), so the remediated SNR
    is matched by wavelength (interpolated onto the original grid), never by index.
    """
    new = np.interp(original.wavelength, remediated.wavelength, remediated.snr,
                    left=np.nan, right=np.nan)
    use = (original.snr > 0) & np.isfinite(original.snr) & np.isfinite(new)
    return original.wavelength[use], new[use] / original.snr[use]


def snr_gain(original: Product, remediated: Product) -> SnrGain | None:
    """Median and 5th/95th percentiles of :func:`relative_snr`; None without both co-adds."""
    if original.snr is None or remediated.snr is None:
        return None
    _wave, ratio = relative_snr(original, remediated)
    if not ratio.size:
        return None
    p5, med, p95 = np.percentile(ratio, [5, 50, 95])
    return SnrGain(median=float(med), p5=float(p5), p95=float(p95), nbins=int(ratio.size))


def remediate(product: Product, datasets: list[Dataset], outdir: Path,
              run_engine: Callable[..., EngineResult], rule: str = "brightest"
              ) -> tuple[Remediation, Product | None]:
    """Scale ``product``'s inputs, co-add them again with the same engine and parameters.

    Parameters
    ----------
    product : Product
        The original product (its inputs name the files to scale).
    datasets : list of Dataset
        The product's input files, read.
    outdir : Path
        A new directory for the scaled copies.
    run_engine : callable
        ``run(directory, threshold=, snrmax=) -> EngineResult`` making at least this
        product from the copies: ``qa.engine.native.run``, ``qa.engine.reference.run``,
        or one that co-adds only this product (``qa.pipeline``).
    rule : str
        Reference rule, see :func:`scale_factors`.

    Returns
    -------
    Remediation, Product or None
        The outcome, and the remediated product (None when not possible).
    """
    rem = Remediation(product=product.key, possible=False, reason="", reference_rule=rule)
    rem.medians = exposure_medians(datasets)
    try:
        scaled_to, factors = scale_factors(rem.medians, rule)
    except NotPossible as exc:
        rem.reason = str(exc)
        return rem, None
    rem.possible, rem.scaled_to, rem.factors = True, scaled_to, factors
    note = f"{scaled_to} (rule {rule})"
    from astropy.io.fits.verify import VerifyError  # astropy only when copies are written

    for ds in datasets:
        try:
            write_scaled_copy(ds, factors, outdir, note)
        except (VerifyError, ValueError, OSError) as exc:
            # e.g. a header card with control characters: astropy reads it, refuses to write it.
            rem.possible, rem.reason = False, (f"cannot write a scaled copy of {ds.name} "
                                               f"({type(exc).__name__}: {_first_line(exc)})")
            return rem, None
    rem.scaled_dir = str(outdir)
    rerun = run_engine(outdir, threshold=product.threshold, snrmax=product.snrmax)
    # The re-run also makes other levels from these files; keep the matching product.
    fixed = next((p for p in rerun.products if p.key == product.key), None)
    if fixed is None:
        problems = "; ".join(f"{k}: {v}" for k, v in rerun.input_errors.items()) or "none"
        rem.possible, rem.reason = False, (f"the scaled copies made no product {product.key} "
                                           f"(input errors: {problems})")
        return rem, None
    rem.kept_after, rem.rejected_after = fixed.kept, [r.file for r in fixed.rejected]
    rem.snr_gain = snr_gain(product, fixed)
    if rem.snr_gain is None:
        rem.reason = ("the original co-add is empty (every exposure was rejected); after scaling "
                      f"the co-add keeps {len(fixed.kept)} of {len(fixed.inputs)}")
    return rem, fixed
