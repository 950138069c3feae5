"""Deterministic synthetic HST x1d files that the real ``hasp`` accepts.

Every array comes from a seeded :class:`numpy.random.Generator`, so one seed gives
byte-identical data. The instrument models are a handful of analytic parameters
fitted once to the real files in ``tests/data/real`` (see the comments at each
constant); those files are never read here.

Count model (per pixel, STIS and COS alike)::

    rate   = source(lambda) * flux_norm * flux_scale * sensitivity(lambda, pixel)
    counts ~ Poisson((rate + background) * exptime)
    GROSS = counts / exptime, NET = GROSS - BACKGROUND, FLUX = NET / sensitivity

so ``NET / FLUX`` (HASP's weight) is the sensitivity whatever ``flux_scale`` is.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

Spectrum = Callable[[np.ndarray], np.ndarray]

# --------------------------------------------------------------------------- spectra

# Rest wavelengths (A) and depths of the lines put on the white dwarf: interstellar
# and photospheric metal lines seen in G191-B2B's STIS spectra, and NUV ISM lines.
_WD_LINES = np.array([
    (1238.82, 0.5), (1242.80, 0.4), (1260.42, 0.7), (1302.17, 0.7), (1334.53, 0.8),
    (1335.71, 0.5), (1393.76, 0.6), (1402.77, 0.5), (1526.71, 0.6), (1548.20, 0.6),
    (1550.78, 0.5), (2344.21, 0.6), (2382.77, 0.7), (2600.17, 0.7), (2796.35, 0.8),
    (2803.53, 0.7),
])


def white_dwarf(wavelength: np.ndarray) -> np.ndarray:
    """Hot DA white dwarf shape, 1 at 1500 A.

    Parameters
    ----------
    wavelength : numpy.ndarray
        Wavelengths in Angstrom.

    Returns
    -------
    numpy.ndarray
        ``(lambda / 1500)**-3.5`` (the slope of o4vt02040's order medians) with
        a broad Lyman-alpha trough and narrow absorption lines.
    """
    w = np.asarray(wavelength, dtype=float)
    continuum = (w / 1500.0) ** -3.5
    lyman_alpha = 1.0 - 0.6 / (1.0 + ((w - 1215.67) / 12.0) ** 2)
    centre, depth = _WD_LINES[:, 0, None], _WD_LINES[:, 1, None]
    lines = np.prod(1.0 - depth * np.exp(-0.5 * ((w.ravel() - centre) / 0.06) ** 2), axis=0)
    return continuum * lyman_alpha * lines.reshape(w.shape)


def power_law(wavelength: np.ndarray, index: float = -1.0) -> np.ndarray:
    """Featureless power law ``(lambda / 1500)**index``, 1 at 1500 A."""
    return (np.asarray(wavelength, dtype=float) / 1500.0) ** index


def flat(wavelength: np.ndarray) -> np.ndarray:
    """Flat spectrum (1 everywhere)."""
    return np.ones_like(np.asarray(wavelength, dtype=float))


SPECTRA: dict[str, Spectrum] = {"white_dwarf": white_dwarf, "power_law": power_law, "flat": flat}

# Target coordinates (deg) written to RA_TARG/DEC_TARG; unknown names get (0, 0).
TARGETS: dict[str, tuple[float, float]] = {
    "G191B2B": (76.37763510299, 52.83129003916),  # from o4vt02040's header
    "BD+28D4211": (327.7954, 28.8637),
    "SYNTH-VAR-1": (150.0, 2.2),
    "SYNTH-STEADY-1": (210.0, -30.0),
}


def _source(spectrum: str | Spectrum) -> Spectrum:
    return SPECTRA[spectrum] if isinstance(spectrum, str) else spectrum


# --------------------------------------------------------------------------- STIS models

STIS_SDQFLAGS = 31743  # as in every real STIS file here (all bits but 1024)
COS_SDQFLAGS = 8346    # calcos default: 2 | 8 | 16 | 128 | 8192


@dataclass(frozen=True)
class _Echelle:
    """Analytic model of one STIS echelle grating (fitted to a real file)."""

    detector: str
    ml: tuple[float, ...]               # m*lambda = c0 + c1 x + c2 x^2 + c3 x^3 + (c4 + c5 x) m
    orders: Mapping[int, tuple[int, int]]  # cenwave -> (lowest, highest order)
    blaze: tuple[float, ...]            # polynomial in x/511.5 - 1, highest power first
    sens_knots: tuple[tuple[float, ...], tuple[float, ...]]  # (A, counts/s per flux unit)
    bkg_fraction: float                 # scattered light / smooth net count rate
    a2_slope: float                     # A2CENTER = 512 + a2_slope * (1/m - 1/m_mid)
    trace_tilt: float                   # EXTRLOCY - A2CENTER per pixel from the centre
    bk_offset: float                    # BK1OFFST at the lowest order (scales as m^-2)
    offset: float                       # OFFSET column
    specres: float
    dead_orders: tuple[int, ...]        # rows flagged entirely (DQ 2048, data 0)


# Fitted with numpy least squares to o4vt02040 (E140M/1425, 44 orders): m*lambda
# residual < 0.025 A; blaze = median over orders of (NET/FLUX) / max per order;
# sensitivity knots = per-order maximum of NET/FLUX against the order's central
# wavelength; background median / net median = 0.23; order 86 is all DQ 2048.
_E140M = _Echelle(
    detector="FUV-MAMA",
    ml=(1.47240e05, 1.62708, -1.59681e-05, 3.03950e-10, -1.19755, -2.76824e-04),
    orders={1425: (86, 129)},
    blaze=(0.09679, 0.05051, -0.62426, -0.00651, 0.99473),
    sens_knots=((1130.0, 1146.5, 1173.8, 1202.5, 1232.6, 1264.2, 1297.5, 1332.6, 1369.7,
                 1408.8, 1450.3, 1494.3, 1541.0, 1590.8, 1643.9, 1700.6, 1740.0),
                (1.0e09, 3.69e09, 2.43e10, 5.80e10, 1.017e11, 1.390e11, 1.613e11, 1.706e11,
                 1.690e11, 1.622e11, 1.516e11, 1.378e11, 1.125e11, 8.12e10, 6.17e10, 4.95e10,
                 4.0e10)),
    bkg_fraction=0.23, a2_slope=245900.0, trace_tilt=-0.0049, bk_offset=-16.82,
    offset=7.9, specres=45800.0, dead_orders=(86,),
)

# Fitted the same way to o3zx02070 (E230M/1978, orders 87-126, residual < 0.04 A).
# Sensitivity beyond 2366 A (not covered by a real file) is an assumed gentle
# decline, following the E230M throughput curve of the STIS handbook. The order
# range of cenwave 2707 reproduces the tutorial's recorded 2277.5-3071.8 A.
_E230M = _Echelle(
    detector="NUV-MAMA",
    ml=(2.02584e05, 3.29823, -1.11197e-05, 7.29696e-11, -1.09837, 3.37220e-04),
    orders={1978: (87, 126), 2707: (67, 89)},
    blaze=(0.79191, 0.39214, -1.57658, -0.38651, 0.96656),
    sens_knots=((1590.0, 1620.3, 1659.8, 1701.3, 1745.0, 1790.9, 1839.3, 1890.5, 1944.5,
                 2001.7, 2062.4, 2126.9, 2195.5, 2268.7, 2346.9, 2450.0, 2600.0, 2800.0,
                 3000.0, 3150.0),
                (5.0e09, 1.052e10, 4.07e10, 7.25e10, 1.083e11, 1.495e11, 1.955e11, 2.412e11,
                 2.941e11, 3.696e11, 4.873e11, 6.414e11, 8.111e11, 9.789e11, 9.744e11,
                 9.5e11, 8.8e11, 7.5e11, 5.8e11, 4.5e11)),
    bkg_fraction=0.07, a2_slope=-252170.0, trace_tilt=0.0098, bk_offset=16.86,
    offset=0.66, specres=30000.0, dead_orders=(),
)

ECHELLE: dict[str, _Echelle] = {"E140M": _E140M, "E230M": _E230M}

# G140L: 1 row; dispersion 0.584 A/px over 1024 px (STIS handbook: 1150-1730 A),
# sensitivity shape of the FUV-MAMA first order (peak ~1400 A).
_G140L_START, _G140L_DISP = 1138.0, 0.5835
_G140L_SENS = ((1130.0, 1200.0, 1300.0, 1400.0, 1500.0, 1600.0, 1700.0, 1740.0),
               (4.0e11, 2.0e12, 4.0e12, 4.6e12, 4.0e12, 2.8e12, 1.6e12, 1.2e12))

NPIX_STIS = 1024
_X = np.arange(NPIX_STIS, dtype=float)


def echelle_wavelengths(grating: str, cenwave: int) -> tuple[np.ndarray, np.ndarray]:
    """Orders and wavelength grid of an echelle setting.

    Parameters
    ----------
    grating : str
        ``"E140M"`` or ``"E230M"``.
    cenwave : int
        Central wavelength setting; must be one of the grating's modelled ones.

    Returns
    -------
    orders : numpy.ndarray
        int16 spectral orders, ascending (row order of real files).
    wavelength : numpy.ndarray
        float64 ``(norders, 1024)``; ``m * lambda`` is the fitted function of pixel.
    """
    mode = ECHELLE[grating]
    if cenwave not in mode.orders:
        raise ValueError(f"{grating} cenwave {cenwave} not modelled; use one of {sorted(mode.orders)}")
    lo, hi = mode.orders[cenwave]
    orders = np.arange(lo, hi + 1, dtype=np.int16)
    c0, c1, c2, c3, cm, cmx = mode.ml
    m = orders[:, None].astype(float)
    ml = c0 + c1 * _X + c2 * _X**2 + c3 * _X**3 + (cm + cmx * _X) * m
    return orders, ml / m


def _interp_log(wavelength: np.ndarray, knots: tuple[tuple[float, ...], tuple[float, ...]]) -> np.ndarray:
    # Log interpolation keeps the steep sensitivity edges positive and smooth.
    return np.exp(np.interp(wavelength, knots[0], np.log(knots[1])))


def _detector_dq(shape: tuple[int, int], seed: int, edge: int = 5) -> np.ndarray:
    """Fixed MAMA DQ pattern (same for every exposure of a setting).

    Fractions and run lengths measured on o4vt02040: order ends 4|512|2048 over
    5 px; hot pixels (16) 0.24 % single; small blemishes (1024) ~0.07 runs per
    row of 2 px; large blemishes (32) ~0.14 runs per row of ~100 px.
    """
    rng = np.random.default_rng(seed)
    nrows, npix = shape
    dq = np.zeros(shape, dtype=np.int16)
    dq[:, :edge] |= 4 | 512 | 2048
    dq[:, -edge:] |= 4 | 512 | 2048
    dq[rng.random(shape) < 0.0024] |= 16
    for bit, nruns, length in ((1024, max(1, round(0.7 * nrows)), 2), (32, max(1, round(0.14 * nrows)), 100)):
        starts = rng.integers(edge, npix - edge - length, nruns)
        rows = np.repeat(rng.integers(0, nrows, nruns), length)
        dq[rows, (starts[:, None] + np.arange(length)).ravel()] |= bit
    return dq


def _extra_dq(rng: np.random.Generator, shape: tuple[int, ...], fraction: float, bit: int) -> np.ndarray:
    """Per-exposure random flags: ``bit`` on ``fraction`` of the pixels."""
    return np.where(rng.random(shape) < fraction, bit, 0).astype(np.int16)


def _counts(rng: np.random.Generator, rate: np.ndarray, background: np.ndarray,
            exptime: float) -> np.ndarray:
    """Poisson gross counts of source rate plus background over ``exptime``."""
    return rng.poisson((rate + background) * exptime).astype(float)


def _stis_arrays(rng: np.random.Generator, wavelength: np.ndarray, sens: np.ndarray,
                 source: np.ndarray, bkg_fraction: float, exptime: float) -> dict[str, np.ndarray]:
    """GROSS, BACKGROUND, NET, FLUX, ERROR of one STIS exposure (count rates, float32)."""
    rate = source * sens
    # Scattered light follows the smooth (line-free) count rate of the order.
    background = bkg_fraction * np.median(rate, axis=-1, keepdims=True) * (0.8 + 0.4 * _X / NPIX_STIS)
    background = background + 2e-4  # MAMA dark floor; also keeps NET off exact zero
    counts = _counts(rng, rate, background, exptime)
    gross = (counts / exptime).astype(np.float32)
    background = background.astype(np.float32)
    net = gross - background
    sens32 = sens.astype(np.float32)
    return {"GROSS": gross, "BACKGROUND": background, "NET": net,
            "FLUX": net / sens32,
            "ERROR": (np.sqrt(counts) / exptime).astype(np.float32) / sens32}


def _stis_table(wavelength: np.ndarray, arrays: Mapping[str, np.ndarray], dq: np.ndarray,
                orders: np.ndarray, geometry: Mapping[str, np.ndarray]) -> fits.BinTableHDU:
    """SCI table with the columns, formats and units of a real STIS x1d file."""
    n = wavelength.shape[1]
    nrows = len(orders)
    flux_unit = "erg/s/cm**2/Angstrom"
    cols = [
        fits.Column("SPORDER", "I", array=orders.astype(np.int16)),
        fits.Column("NELEM", "I", array=np.full(nrows, n, np.int16)),
        fits.Column("WAVELENGTH", f"{n}D", unit="Angstroms", array=wavelength),
        *(fits.Column(name, f"{n}E", unit="Counts/s", array=arrays[name])
          for name in ("GROSS", "BACKGROUND", "NET")),
        fits.Column("FLUX", f"{n}E", unit=flux_unit, array=arrays["FLUX"]),
        fits.Column("ERROR", f"{n}E", unit=flux_unit, array=arrays["ERROR"]),
        fits.Column("DQ", f"{n}I", array=dq),
        fits.Column("A2CENTER", "E", unit="pixel", array=geometry["A2CENTER"]),
        fits.Column("EXTRSIZE", "E", unit="pixel", array=np.full(nrows, 7.0, np.float32)),
        fits.Column("MAXSRCH", "I", unit="pixel", array=np.full(nrows, 10, np.int16)),
        fits.Column("BK1SIZE", "E", unit="pixel", array=np.full(nrows, 5.0, np.float32)),
        fits.Column("BK2SIZE", "E", unit="pixel", array=np.full(nrows, 5.0, np.float32)),
        fits.Column("BK1OFFST", "E", unit="pixel", array=geometry["BK1OFFST"]),
        fits.Column("BK2OFFST", "E", unit="pixel", array=-geometry["BK1OFFST"]),
        fits.Column("EXTRLOCY", f"{n}E", unit="pixel", array=geometry["EXTRLOCY"]),
        fits.Column("OFFSET", "E", unit="pixel", array=geometry["OFFSET"]),
    ]
    return fits.BinTableHDU.from_columns(cols)


def _echelle_geometry(mode: _Echelle, orders: np.ndarray) -> dict[str, np.ndarray]:
    """Extraction geometry columns: trace positions follow the cross-dispersion ~ 1/m."""
    inv = 1.0 / orders.astype(float)
    a2 = 512.0 + mode.a2_slope * (inv - inv.mean())
    return {"A2CENTER": a2.astype(np.float32),
            "EXTRLOCY": (a2[:, None] + mode.trace_tilt * (_X - 511.5)).astype(np.float32),
            "BK1OFFST": (mode.bk_offset * (orders[0] * inv) ** 2).astype(np.float32),
            "OFFSET": np.full(len(orders), mode.offset, np.float32)}


# --------------------------------------------------------------------------- headers

def _program_code(program: int | str) -> str:
    """Three-character ``ppp`` for a rootname (real HST codes are assigned; this is stable)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    n = int(program) % 36**3
    return "".join(digits[(n // 36**k) % 36] for k in (2, 1, 0))


def _primary(*, instrument: str, detector: str, grating: str, cenwave: int, rootname: str,
             filename: str, program: int | str, target: str, aperture: str,
             wavelength: np.ndarray, specres: float, exptime: float, nsci: int,
             obsmode: str) -> fits.Header:
    ra, dec = TARGETS.get(target, (0.0, 0.0))
    minwave, maxwave = float(np.floor(wavelength.min())), float(np.ceil(wavelength.max()))
    cards = [
        ("NEXTEND", nsci, "number of extensions in file"),
        ("FILENAME", filename, "name of file"),
        ("FILETYPE", "SCI", "type of data found in data file"),
        ("TELESCOP", "HST", "telescope used to acquire data"),
        ("INSTRUME", instrument, "identifier for instrument used to acquire data"),
        ("EQUINOX", 2000.0, "equinox of celestial coord. system"),
        ("ROOTNAME", rootname, "rootname of the observation set"),
        ("TARGNAME", target, "proposer's target name"),
        ("RA_TARG", ra, "right ascension of the target (deg) (J2000)"),
        ("DEC_TARG", dec, "declination of the target (deg) (J2000)"),
        ("PROPOSID", int(program), "PEP proposal identifier"),
        ("PR_INV_L", "Synthetic", "last name of principal investigator"),
        ("PR_INV_F", "Hasp-QA", "first name of principal investigator"),
        ("TEXPTIME", exptime * nsci, "total exposure time (seconds)"),
        ("POSTARG1", 0.0, "POSTARG in axis 1 direction"),
        ("POSTARG2", 0.0, "POSTARG in axis 2 direction"),
        ("CAL_VER", "3.4.2 (synthetic)" if instrument == "STIS" else "3.4.4 (synthetic)",
         "calibration code version"),
        ("OBSTYPE", "SPECTROSCOPIC", "observation type - imaging or spectroscopic"),
        ("OBSMODE", obsmode, "operating mode"),
        ("DETECTOR", detector, "detector in use"),
        ("OPT_ELEM", grating, "optical element in use"),
        ("APERTURE", aperture, "aperture name"),
        ("PROPAPER", aperture, "proposed aperture name"),
        ("CENWAVE", int(cenwave), "central wavelength of spectrum"),
        ("PATTERN1", "NONE", "primary pattern type"),
        ("P1_PURPS", "", "primary pattern purpose"),
        ("P1_FRAME", "", "coordinate frame of primary pattern"),
        ("BANDWID", maxwave - minwave, "bandwidth of the data"),
        ("SPECRES", specres, "approx. resolving power at central wavelength"),
        ("CENTRWV", float(cenwave), "central wavelength of the data"),
        ("MINWAVE", minwave, "minimum wavelength in spectrum"),
        ("MAXWAVE", maxwave, "maximum wavelength in spectrum"),
        ("MTFLAG", " " if instrument == "STIS" else "F", "moving target flag"),
    ]
    return fits.Header(cards)


def _sci_header(*, extver: int, expname: str, exptime: float, expstart: float,
                sdqflags: int) -> fits.Header:
    return fits.Header([
        ("EXTNAME", "SCI", "Extension name"),
        ("EXTVER", extver, "Extension version"),
        ("INHERIT", True, "inherit the primary header"),
        ("EXPNAME", expname, "exposure identifier"),
        ("FGSLOCK", "FINE", "commanded FGS lock (FINE,COARSE,GYROS,UNKNOWN)"),
        ("EXPSTART", expstart, "exposure start time (Modified Julian Date)"),
        ("EXPEND", expstart + exptime / 86400.0, "exposure end time (Modified Julian Date)"),
        ("EXPTIME", float(exptime), "exposure duration (seconds)--calculated"),
        ("PLANTIME", float(exptime), "planned exposure time (seconds)"),
        ("EXPFLAG", "NORMAL", "Exposure interruption indicator"),
        ("SDQFLAGS", sdqflags, "serious data quality flags"),
    ])


def _apply_overrides(hdul: fits.HDUList, header: Mapping[str, object] | None) -> None:
    """Set override keys: a key the SCI header already has goes there, else primary."""
    for key, value in (header or {}).items():
        targets = [h for h in hdul[1:] if key in h.header] or [hdul[0]]
        for hdu in targets:
            hdu.header[key] = value


def _write(outdir: str | Path, rootname: str, primary: fits.Header,
           tables: list[fits.BinTableHDU], header: Mapping[str, object] | None) -> Path:
    path = Path(outdir) / f"{rootname}_x1d.fits"
    path.parent.mkdir(parents=True, exist_ok=True)
    hdul = fits.HDUList([fits.PrimaryHDU(header=primary), *tables])
    _apply_overrides(hdul, header)
    hdul.writeto(path, overwrite=True)
    return path


def _check_rootname(rootname: str, first: str) -> None:
    if len(rootname) != 9 or rootname[0] != first:
        raise ValueError(f"rootname {rootname!r} must be 9 characters starting with {first!r}")


# --------------------------------------------------------------------------- STIS writers

def write_stis_echelle(outdir: str | Path, *, rootname: str, grating: str = "E140M",
                       cenwave: int | None = None, program: int | str = 8435,
                       target: str = "G191B2B", spectrum: str | Spectrum = "white_dwarf",
                       flux_norm: float = 1e-11, flux_scale: float = 1.0, exptime: float = 1000.0,
                       aperture: str = "0.2X0.2", nsci: int = 1, seed: int = 0,
                       expstart: float = 51900.0, extra_dq_fraction: float = 0.0,
                       extra_dq_bit: int = 4, header: Mapping[str, object] | None = None) -> Path:
    """Write a STIS MAMA echelle ``{rootname}_x1d.fits``.

    Parameters
    ----------
    outdir : str or Path
        Directory to write into (created if missing).
    rootname : str
        9-character ``ipppssoot`` starting with ``o``; HASP's visit is ``rootname[4:6]``.
    grating : str
        ``"E140M"`` (FUV-MAMA, orders 86-129) or ``"E230M"`` (NUV-MAMA).
    cenwave : int, optional
        Setting; defaults to 1425 (E140M) or 1978 (E230M); E230M also takes 2707.
    program : int or str
        PROPOSID.
    target : str
        TARGNAME (coordinates from :data:`TARGETS`).
    spectrum : str or callable
        Name in :data:`SPECTRA` or a function of wavelength (A), 1 near 1500 A
        (e.g. ``functools.partial(power_law, index=-2)``).
    flux_norm : float
        Flux (erg/s/cm2/A) of ``spectrum`` = 1.
    flux_scale : float
        Fraction of the source light reaching the detector (e.g. slit losses):
        fewer counts, same sensitivity, so FLUX scales by it.
    exptime : float
        Seconds per SCI extension; sets the count level and hence the SNR.
    aperture : str
        APERTURE and PROPAPER.
    nsci : int
        Number of SCI extensions (independent exposures in one file).
    seed : int
        Seed of the noise and of the per-exposure flags.
    expstart : float
        EXPSTART (MJD) of the first extension; later ones follow.
    extra_dq_fraction, extra_dq_bit : float, int
        Flag this fraction of the pixels with this bit on top of the fixed pattern.
    header : mapping, optional
        Keyword overrides, e.g. ``{"EXPFLAG": "INTERRUPTED", "POSTARG1": 0.05}``;
        keys of the SCI header go to every SCI extension, others to the primary.

    Returns
    -------
    Path
        The file written.
    """
    _check_rootname(rootname, "o")
    mode = ECHELLE[grating]
    cenwave = cenwave if cenwave is not None else min(mode.orders)
    orders, wavelength = echelle_wavelengths(grating, cenwave)
    xn = _X / 511.5 - 1.0
    sens = _interp_log(wavelength, mode.sens_knots) * np.polyval(mode.blaze, xn)
    source = _source(spectrum)(wavelength) * flux_norm * flux_scale
    fixed_dq = _detector_dq(wavelength.shape, seed=cenwave)
    dead = np.isin(orders, mode.dead_orders)
    fixed_dq[dead] = 2048
    tables = _stis_exposures(
        np.random.default_rng(seed), wavelength=wavelength, orders=orders, sens=sens, source=source,
        bkg_fraction=mode.bkg_fraction, fixed_dq=fixed_dq, dead=dead,
        geometry=_echelle_geometry(mode, orders), exptime=exptime, nsci=nsci, rootname=rootname,
        expstart=expstart, extra_dq_fraction=extra_dq_fraction, extra_dq_bit=extra_dq_bit)
    primary = _primary(instrument="STIS", detector=mode.detector, grating=grating, cenwave=cenwave,
                       rootname=rootname, filename=f"{rootname}_x1d.fits", program=program,
                       target=target, aperture=aperture, wavelength=wavelength,
                       specres=mode.specres, exptime=exptime, nsci=nsci, obsmode="ACCUM")
    return _write(outdir, rootname, primary, tables, header)


def _stis_exposures(rng: np.random.Generator, *, wavelength: np.ndarray, orders: np.ndarray,
                    sens: np.ndarray, source: np.ndarray, bkg_fraction: float,
                    fixed_dq: np.ndarray, dead: np.ndarray, geometry: Mapping[str, np.ndarray],
                    exptime: float, nsci: int, rootname: str, expstart: float,
                    extra_dq_fraction: float, extra_dq_bit: int) -> list[fits.BinTableHDU]:
    """One SCI table per exposure; exposures follow each other with 600 s gaps."""
    tables = []
    for ext in range(nsci):
        arrays = _stis_arrays(rng, wavelength, sens, source, bkg_fraction, exptime)
        for values in arrays.values():
            values[dead] = 0.0  # calstis writes zeros for an order it could not extract
        dq = fixed_dq | _extra_dq(rng, wavelength.shape, extra_dq_fraction, extra_dq_bit)
        table = _stis_table(wavelength, arrays, dq, orders, geometry)
        table.header.extend(_sci_header(extver=ext + 1, expname=_expname(rootname, ext),
                                        exptime=exptime, expstart=expstart + ext * (exptime + 600) / 86400,
                                        sdqflags=STIS_SDQFLAGS))
        tables.append(table)
    return tables


def _expname(rootname: str, ext: int) -> str:
    # Real STIS exposure names keep ipppss, then two characters and 'q' (o4vt02040 -> o4vt02nyq).
    n = int(rootname[6:8], 36) * 7 + ext
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return f"{rootname[:6]}{digits[n // 36 % 36]}{digits[n % 36]}q"


def write_stis_first_order(outdir: str | Path, *, rootname: str, grating: str = "G140L",
                           cenwave: int = 1425, program: int | str = 99103,
                           target: str = "SYNTH-STEADY-1", spectrum: str | Spectrum = "power_law",
                           flux_norm: float = 1e-13, flux_scale: float = 1.0,
                           exptime: float = 1000.0, aperture: str = "52X0.2", nsci: int = 1,
                           seed: int = 0, expstart: float = 51900.0,
                           extra_dq_fraction: float = 0.0, extra_dq_bit: int = 4,
                           header: Mapping[str, object] | None = None) -> Path:
    """Write a STIS FUV-MAMA G140L ``{rootname}_x1d.fits`` (one row of 1024 px, ~1140-1735 A).

    Parameters are those of :func:`write_stis_echelle`; only G140L/1425 is modelled.

    Returns
    -------
    Path
        The file written.
    """
    _check_rootname(rootname, "o")
    if (grating, cenwave) != ("G140L", 1425):
        raise ValueError("only STIS G140L/1425 is modelled")
    wavelength = (_G140L_START + _G140L_DISP * _X)[None, :]
    orders = np.array([1], np.int16)
    sens = _interp_log(wavelength, _G140L_SENS)
    source = _source(spectrum)(wavelength) * flux_norm * flux_scale
    fixed_dq = _detector_dq(wavelength.shape, seed=cenwave)
    geometry = {"A2CENTER": np.array([512.0], np.float32),
                "EXTRLOCY": np.full((1, NPIX_STIS), 512.0, np.float32),
                "BK1OFFST": np.array([-300.0], np.float32), "OFFSET": np.zeros(1, np.float32)}
    tables = _stis_exposures(
        np.random.default_rng(seed), wavelength=wavelength, orders=orders, sens=sens, source=source,
        bkg_fraction=0.05, fixed_dq=fixed_dq, dead=np.zeros(1, bool), geometry=geometry,
        exptime=exptime, nsci=nsci, rootname=rootname, expstart=expstart,
        extra_dq_fraction=extra_dq_fraction, extra_dq_bit=extra_dq_bit)
    primary = _primary(instrument="STIS", detector="FUV-MAMA", grating=grating, cenwave=cenwave,
                       rootname=rootname, filename=f"{rootname}_x1d.fits", program=program,
                       target=target, aperture=aperture, wavelength=wavelength,
                       specres=1000.0, exptime=exptime, nsci=nsci, obsmode="ACCUM")
    return _write(outdir, rootname, primary, tables, header)


# --------------------------------------------------------------------------- COS

NPIX_COS_FUV = 16384
NPIX_COS_NUV = 1274
_FUV_ACTIVE = (1100, 15300)  # active columns of the FUV XDL segments (outside: DQ 128)


@dataclass(frozen=True)
class _CosGrating:
    """COS grating: dispersion (A/px), segment layout, sensitivity knots."""

    detector: str
    dispersion: float
    gap: float                      # FUV: A between FUVB's end and cenwave; NUV: stripe step
    sens_knots: tuple[tuple[float, ...], tuple[float, ...]]
    specres: float


# Dispersions and segment/stripe layouts from the COS instrument handbook (no real
# COS file is available here); sensitivities are smooth effective-area shapes
# converted to counts/s per flux unit per pixel.
COS_GRATINGS: dict[str, _CosGrating] = {
    "G130M": _CosGrating("FUV", 0.00997, 17.0,
                         ((1050.0, 1150.0, 1200.0, 1250.0, 1300.0, 1350.0, 1400.0, 1480.0),
                          (1.0e11, 6.0e11, 9.0e11, 1.1e12, 1.1e12, 1.0e12, 8.0e11, 5.0e11)), 18000.0),
    "G160M": _CosGrating("FUV", 0.01223, 22.0,
                         ((1350.0, 1450.0, 1550.0, 1650.0, 1750.0, 1850.0),
                          (7.0e11, 8.0e11, 7.0e11, 5.0e11, 3.0e11, 1.5e11)), 18000.0),
    "G185M": _CosGrating("NUV", 0.037, 125.0,
                         ((1600.0, 1800.0, 2000.0, 2200.0), (1.0e11, 2.0e11, 2.5e11, 2.0e11)), 20000.0),
    "G225M": _CosGrating("NUV", 0.033, 100.0,
                         ((2000.0, 2200.0, 2400.0, 2600.0), (1.5e11, 2.5e11, 2.5e11, 1.5e11)), 20000.0),
    "G285M": _CosGrating("NUV", 0.040, 110.0,
                         ((2400.0, 2700.0, 3000.0, 3300.0), (1.0e11, 1.5e11, 1.2e11, 0.6e11)), 20000.0),
}


def cos_wavelengths(grating: str, cenwave: int, segment: str, fppos: int = 3) -> np.ndarray:
    """Wavelength of every pixel of one COS segment (FUVA/FUVB) or stripe (NUVA/B/C).

    FUV: FUVA's active area starts at ``cenwave``, FUVB's ends ``gap`` A below it;
    each FP-POS step moves the spectrum by 250 px. NUV: stripes are ``gap`` A apart,
    NUVB centred on ``cenwave``.
    """
    g = COS_GRATINGS[grating]
    if g.detector == "FUV":
        x = np.arange(NPIX_COS_FUV, dtype=float) + 250.0 * (fppos - 3)
        lo, hi = _FUV_ACTIVE
        if segment == "FUVA":
            return cenwave + g.dispersion * (x - lo)
        return cenwave - g.gap - g.dispersion * (hi - x)
    x = np.arange(NPIX_COS_NUV, dtype=float) - NPIX_COS_NUV / 2
    return cenwave + g.gap * ("NUVA", "NUVB", "NUVC").index(segment) - g.gap + g.dispersion * x


def _cos_dq(segment: str, npix: int, seed: int) -> np.ndarray:
    """Fixed COS DQ pattern: out-of-bounds 128, very-low-response edges 16,
    grid-wire shadows 4 (not serious), a few gain-sag holes 8192 on FUVB."""
    rng = np.random.default_rng(seed)
    dq = np.zeros(npix, dtype=np.int16)
    x = np.arange(npix)
    if segment.startswith("FUV"):
        lo, hi = _FUV_ACTIVE
        dq[(x < lo) | (x >= hi)] |= 128
        dq[((x >= lo) & (x < lo + 30)) | ((x >= hi - 30) & (x < hi))] |= 16
        dq[(x - lo) % 880 < 12] |= 4
        if segment == "FUVB":
            starts = rng.integers(lo + 100, hi - 300, 3)
            dq[(starts[:, None] + np.arange(60)).ravel()] |= 8192
    dq[rng.random(npix) < 0.002] |= 1024  # low-response pixels (not serious)
    return dq


def _cos_table(rng: np.random.Generator, segments: list[str], wavelength: np.ndarray,
               sens: np.ndarray, source: np.ndarray, dq: np.ndarray, exptime: float) -> fits.BinTableHDU:
    """SCI table with the columns of a real calcos x1d file."""
    active = (dq & 128) == 0
    rate = np.where(active, source * sens, 0.0)
    background = np.where(active, 2e-4, 0.0)  # dark rate summed over the extraction box
    counts = _counts(rng, rate, background, exptime)
    bkg_counts = background * exptime
    per_flux = np.where(active, 1.0 / (exptime * sens), 0.0)  # flux per count
    net = (counts - bkg_counts) / exptime
    # Gehrels (1986) upper and lower 1-sigma counts, as calcos reports them.
    upper = 1.0 + np.sqrt(counts + 0.75)
    lower = counts - counts * (1.0 - 1.0 / (9.0 * np.maximum(counts, 1.0))
                               - 1.0 / (3.0 * np.sqrt(np.maximum(counts, 1.0)))) ** 3
    n, npix = wavelength.shape
    serious = (dq & COS_SDQFLAGS) != 0
    columns = {
        "SEGMENT": ("4A", None, np.array(segments)),
        "EXPTIME": ("1D", "s", np.full(n, float(exptime))),
        "NELEM": ("1J", None, np.full(n, npix, np.int32)),
        "WAVELENGTH": (f"{npix}D", "angstrom", wavelength),
        "FLUX": (f"{npix}E", "erg /s /cm2 /angstrom", net * per_flux * exptime),
        "ERROR": (f"{npix}E", "erg /s /cm2 /angstrom", upper * per_flux),
        "ERROR_LOWER": (f"{npix}E", "erg /s /cm2 /angstrom", lower * per_flux),
        "VARIANCE_FLAT": (f"{npix}E", "count", (0.01 * counts) ** 2),
        "VARIANCE_COUNTS": (f"{npix}E", "count", counts),
        "VARIANCE_BKG": (f"{npix}E", "count", bkg_counts),
        "GROSS": (f"{npix}E", "count /s", counts / exptime),
        "GCOUNTS": (f"{npix}E", "count", counts),
        "NET": (f"{npix}E", "count /s", net),
        "BACKGROUND": (f"{npix}E", "count /s", background),
        "DQ": (f"{npix}I", None, dq),
        "DQ_WGT": (f"{npix}E", None, np.where(serious, 0.0, 1.0)),
    }
    return fits.BinTableHDU.from_columns(
        [fits.Column(name, fmt, unit=unit, array=array) for name, (fmt, unit, array) in columns.items()])


def write_cos(outdir: str | Path, *, rootname: str, grating: str = "G130M", cenwave: int = 1291,
              segments: tuple[str, ...] | None = None, program: int | str = 99101,
              target: str = "SYNTH-VAR-1", spectrum: str | Spectrum = "power_law",
              flux_norm: float = 1e-13, flux_scale: float = 1.0, exptime: float = 1000.0,
              fppos: int = 3, life_adj: int = 4, aperture: str = "PSA", seed: int = 0,
              expstart: float = 58000.0, extra_dq_fraction: float = 0.0, extra_dq_bit: int = 8,
              header: Mapping[str, object] | None = None) -> Path:
    """Write a COS ``{rootname}_x1d.fits`` (FUV: FUVA/FUVB of 16384 px; NUV: 3 stripes of 1274 px).

    Parameters
    ----------
    outdir : str or Path
        Directory to write into.
    rootname : str
        9-character ``ipppssoot`` starting with ``l``.
    grating, cenwave : str, int
        A grating of :data:`COS_GRATINGS` and its setting.
    segments : tuple of str, optional
        Rows to write, ordered as calcos does (default FUVA, FUVB or NUVA, NUVB, NUVC).
    fppos, life_adj : int
        FP-POS (shifts the spectrum 250 px per step) and lifetime position.
    extra_dq_bit : int
        Bit for ``extra_dq_fraction`` (default 8, serious for COS).

    Other parameters are those of :func:`write_stis_echelle`.

    Returns
    -------
    Path
        The file written.
    """
    _check_rootname(rootname, "l")
    g = COS_GRATINGS[grating]
    segments = list(segments or (("FUVA", "FUVB") if g.detector == "FUV" else ("NUVA", "NUVB", "NUVC")))
    npix = NPIX_COS_FUV if g.detector == "FUV" else NPIX_COS_NUV
    wavelength = np.stack([cos_wavelengths(grating, cenwave, s, fppos) for s in segments])
    sens = _interp_log(wavelength, g.sens_knots)
    source = _source(spectrum)(wavelength) * flux_norm * flux_scale
    rng = np.random.default_rng(seed)
    dq = np.stack([_cos_dq(s, npix, seed=cenwave + i) for i, s in enumerate(segments)])
    dq |= _extra_dq(rng, dq.shape, extra_dq_fraction, extra_dq_bit)
    table = _cos_table(rng, segments, wavelength, sens, source, dq, exptime)
    table.header.extend(_sci_header(extver=1, expname=rootname, exptime=exptime, expstart=expstart,
                                    sdqflags=COS_SDQFLAGS))
    primary = _primary(instrument="COS", detector=g.detector, grating=grating, cenwave=cenwave,
                       rootname=rootname, filename=f"{rootname}_x1d.fits", program=program,
                       target=target, aperture=aperture, wavelength=wavelength,
                       specres=g.specres, exptime=exptime, nsci=1, obsmode="TIME-TAG")
    primary["LIFE_ADJ"] = (life_adj, "lifetime adjustment position")
    primary["FPPOS"] = (fppos, "FP-POS position")
    primary["SEGMENT"] = ("BOTH" if g.detector == "FUV" else "N/A", "FUV segments in use")
    return _write(outdir, rootname, primary, [table], header)


# --------------------------------------------------------------------------- demo programs

# Tutorial (hasp-primer section 4): whole-array FLUX medians of the three E140M
# exposures of visit 03 are 7.332182e-12, 6.142719e-12 and 5.53908e-12.
_TUTORIAL_MEDIANS = (7.332182e-12, 6.142719e-12, 5.53908e-12)
# flux_norm of the white dwarf that makes the whole-array median of an E140M/1425
# file 7.332182e-12 (measured once on the generator's own output).
_G191B2B_NORM = 5.808e-12
# Count level tuned against the real hasp 1.2.5 so that it rejects o5jy03030 only
# (200 s: median per-pixel SNR ~9.6 over the file, ~12 in the orders that trip
# the filter, near the 11-16 the primer derives from the recorded run; at 500 s
# o5jy03020 is rejected too, the cascade the recorded run did not show).
_TUTORIAL_EXPTIME = 200.0

DEMO_PROGRAMS: dict[str, str] = {
    "8435": ("G191B2B, STIS: visit 03 E140M/1425 0.1X0.03 o5jy03010/020/030 with whole-array "
             "median fluxes 1 : 0.838 : 0.755 of 7.33e-12 (HASP rejects o5jy03030 only); visit 04 "
             "E230M/2707 o5jy04010/020/030 of near-equal flux (nothing rejected)"),
    "99101": ("SYNTH-VAR-1, COS FUV G130M/1291: a variable source in 4 exposures of one visit, "
              "the third 8 % low (HASP rejects it, and only it)"),
    "99102": ("SYNTH-STEADY-1, COS FUV G160M/1600 (3 exposures) and STIS E230M/1978 "
              "(2 exposures) of a steady power-law source: nothing rejected"),
}


def _demo_8435(outdir: Path) -> list[Path]:
    paths = []
    for i, median in enumerate(_TUTORIAL_MEDIANS):
        paths.append(write_stis_echelle(
            outdir, rootname=f"o5jy030{i + 1}0", grating="E140M", cenwave=1425, program=8435,
            target="G191B2B", flux_norm=_G191B2B_NORM, flux_scale=median / _TUTORIAL_MEDIANS[0],
            exptime=_TUTORIAL_EXPTIME, aperture="0.1X0.03", seed=8435_03_0 + i,
            expstart=51800.10 + 0.03 * i))
    for i, scale in enumerate((1.0, 0.99, 0.985)):
        paths.append(write_stis_echelle(
            outdir, rootname=f"o5jy040{i + 1}0", grating="E230M", cenwave=2707, program=8435,
            target="G191B2B", flux_norm=_G191B2B_NORM, flux_scale=scale, exptime=_TUTORIAL_EXPTIME,
            aperture="0.1X0.03", seed=8435_04_0 + i, expstart=51800.30 + 0.03 * i))
    return paths


def _demo_99101(outdir: Path) -> list[Path]:
    # The third exposure catches the source 8 % fainter than the visit's mean level.
    return [write_cos(outdir, rootname=f"l{_program_code(99101)}010{i + 1}0", grating="G130M",
                      cenwave=1291, program=99101, target="SYNTH-VAR-1", flux_norm=1e-13,
                      flux_scale=scale, exptime=1000.0, fppos=i % 4 + 1, seed=99101_0 + i,
                      expstart=58000.10 + 0.05 * i)
            for i, scale in enumerate((1.0, 1.01, 0.92, 0.995))]


def _demo_99102(outdir: Path) -> list[Path]:
    cos = [write_cos(outdir, rootname=f"l{_program_code(99102)}010{i + 1}0", grating="G160M",
                     cenwave=1600, program=99102, target="SYNTH-STEADY-1", flux_norm=1e-13,
                     exptime=1500.0, fppos=i + 2, seed=99102_0 + i, expstart=58100.10 + 0.05 * i)
           for i in range(3)]
    stis = [write_stis_echelle(outdir, rootname=f"o{_program_code(99102)}020{i + 1}0", grating="E230M",
                               cenwave=1978, program=99102, target="SYNTH-STEADY-1",
                               spectrum="power_law", flux_norm=1e-11, exptime=800.0,
                               seed=99102_10 + i, expstart=58101.10 + 0.05 * i)
            for i in range(2)]
    return cos + stis


_DEMO_WRITERS: dict[str, Callable[[Path], list[Path]]] = {
    "8435": _demo_8435, "99101": _demo_99101, "99102": _demo_99102}


def write_demo_program(program_id: str, outdir: str | Path) -> list[Path]:
    """Write the files of one demo program (see :data:`DEMO_PROGRAMS`) into ``outdir``.

    Parameters
    ----------
    program_id : str
        A key of :data:`DEMO_PROGRAMS`.
    outdir : str or Path
        Directory to write into (created if missing).

    Returns
    -------
    list of Path
        The files written, sorted.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return sorted(_DEMO_WRITERS[str(program_id)](outdir))


def write_demo(outdir: str | Path) -> dict[str, list[Path]]:
    """Write every demo program into ``outdir/<program_id>/``.

    Returns
    -------
    dict
        Program id -> files written.
    """
    return {pid: write_demo_program(pid, Path(outdir) / pid) for pid in DEMO_PROGRAMS}


# --------------------------------------------------------------------------- archive-scale programs

def write_survey_program(program: int, outdir: str | Path, *, low_fraction: float = 0.2,
                         seed: int = 0) -> list[Path]:
    """One generated program at archive shape: 2 modes x 4 visits of 3 exposures (10 products).

    STIS E140M (visits 01-04, the tutorial's white dwarf at 200 s) and COS G130M
    (visits 11-14, a power law at 1000 s). In about ``low_fraction`` of the visits
    one exposure caught less light (0.755 of it for STIS, as the tutorial's
    o5jy03030; 0.85 for COS), which HASP's flux filter rejects; the program-level
    products then lose it too.

    Parameters
    ----------
    program : int
        PROPOSID; also names the target ``SURVEY-<program>``.
    outdir : str or Path
        Directory to write into (created if missing).
    low_fraction : float
        Chance that a visit holds one low exposure.
    seed : int
        Seed of the choice of low visits and of the noise.

    Returns
    -------
    list of Path
        The 24 files written, sorted.
    """
    outdir = Path(outdir)
    rng = np.random.default_rng([seed, program])
    code, target = _program_code(program), f"SURVEY-{program}"
    paths = []
    for v in range(4):
        low = rng.random() < low_fraction
        for i in range(3):
            scale = 0.755 if low and i == 2 else 1.0
            paths.append(write_stis_echelle(
                outdir, rootname=f"o{code}{v + 1:02d}0{i + 1}0", grating="E140M", cenwave=1425,
                program=program, target=target, flux_norm=_G191B2B_NORM, flux_scale=scale,
                exptime=_TUTORIAL_EXPTIME, aperture="0.1X0.03", seed=int(rng.integers(1 << 30)),
                expstart=55000.0 + v + 0.03 * i))
    for v in range(4):
        low = rng.random() < low_fraction
        for i in range(3):
            scale = 0.85 if low and i == 2 else 1.0
            paths.append(write_cos(
                outdir, rootname=f"l{code}{v + 11:02d}0{i + 1}0", grating="G130M", cenwave=1291,
                program=program, target=target, flux_scale=scale, exptime=1000.0, fppos=i % 4 + 1,
                seed=int(rng.integers(1 << 30)), expstart=56000.0 + v + 0.05 * i))
    return sorted(paths)
