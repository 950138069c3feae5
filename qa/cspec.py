"""The remediated co-add as a product: a FITS file in HASP's own ``cspec`` format.

The tutorial ends with a new co-add of the scaled exposures; this writes it as
the archive would, so it opens in every tool that reads HASP products. HASP's
writer itself (``HASP_SegmentList.write`` of the installed ``hasp``) lays out
the file -- primary header keywords, the SCIENCE table (WAVELENGTH, FLUX, ERROR,
SNR, EFF_EXPTIME with their units) and the PROVENANCE table of the contributing
exposures -- from the scaled copies' headers; the arrays are the co-add the
engine computed (never recomputed here). hasp-qa then adds what a reader needs
to trust the file: that it is a remediated co-add, each input's scale factor and
the sha256 of the original file it was scaled from, and the reference exposure.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from qa import __version__
from qa.results import Product, Remediation

# HLSP levels of HASP's single-grating products.
LEVELS = {"visit": 1, "program": 3}


def _segment_list(wrapper, instrument: str, detector: str):
    if instrument == "COS":
        return wrapper.HASP_COSSegmentList(None, inpath=".")
    if detector == "CCD":
        return wrapper.HASP_CCDSegmentList(None, inpath=".")
    return wrapper.HASP_STISSegmentList(None, inpath=".")


def _import_headers(prod, paths: list[str]) -> None:
    """HASP's ``import_data`` without the arrays: the attributes ``write`` reads.

    ``import_data`` also reads every row into Segment objects (most of its cost); the
    writer only needs the headers, per SCI extension in file order, and the lists
    and names taken from the primary headers (hasp 1.2.5, ``HASP_SegmentList.import_data``).
    """
    prod.datasets, prod.num_exp = [], 0
    prod.gratinglist, prod.instrumentlist, prod.aperturelist = [], [], []
    prod.primary_headers, prod.first_headers = [], []
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            primary = hdul[0].header
            for ext in hdul[1:]:
                if ext.header["EXTNAME"] == "SCI" and ext.header.get("NAXIS2", 0) > 0:
                    prod.primary_headers.append(primary)
                    prod.first_headers.append(ext.header)
                    prod.datasets.append(path)
                    prod.num_exp += 1
        prod.instrument = primary["INSTRUME"].upper()
        prod.grating = primary["OPT_ELEM"].upper()
        prod.propid, prod.rootname, prod.detector = primary["PROPOSID"], primary["ROOTNAME"], primary["DETECTOR"]
        prod.aperture = primary["APERTURE"] if prod.instrument == "COS" else primary["PROPAPER"]
        for values, value in ((prod.gratinglist, prod.grating), (prod.instrumentlist, prod.instrument),
                              (prod.aperturelist, prod.aperture), (prod.targnames, primary["TARGNAME"].strip())):
            if value not in values:
                values.append(value)


def provenance_cards(remediation: Remediation, source_sha256: Mapping[str, str]) -> list[tuple]:
    """Primary-header cards of the remediation: rule, reference, and per input its factor and sha256.

    Indexed keywords (``QAFIL001``, ``QAFAC001``, ``QASHA001``, ...) keep within
    FITS's 8-character names for up to 999 scaled exposures.
    """
    cards = [("QAREMED", True, "hasp-qa: co-add of inputs scaled to a common median"),
             ("QAVER", __version__, "hasp-qa version that wrote this file"),
             ("QARULE", remediation.reference_rule, "scale reference rule"),
             ("QAREF", remediation.scaled_to, "reference exposure (factor 1)")]
    for i, (exposure, factor) in enumerate(remediation.factors.items(), start=1):
        file = exposure.split("[")[0]
        cards += [(f"QAFIL{i:03d}", exposure, "scaled input exposure"),
                  (f"QAFAC{i:03d}", float(factor), "FLUX and ERROR multiplied by this"),
                  (f"QASHA{i:03d}", source_sha256.get(file, "unknown"), "")]
    return cards


def write_cspec(product: Product, scaled_paths: list[Path], path: str | Path,
                remediation: Remediation, source_sha256: Mapping[str, str]) -> Path:
    """Write the remediated ``product`` as a HASP ``cspec`` file at ``path`` (atomically).

    Parameters
    ----------
    product : Product
        The co-add of the scaled copies (with its arrays), as the engine made it.
    scaled_paths : list of Path
        The scaled copies; those in ``product.kept`` fill the provenance table.
    path : path-like
        The file to write; its name becomes the FILENAME keyword, so use
        ``product.filename``.
    remediation : Remediation
        Factors, reference exposure and rule written into the primary header.
    source_sha256 : mapping
        Original file name -> sha256, for the provenance keywords.

    Returns
    -------
    Path
        ``path``.
    """
    from hasp import wrapper

    if product.wavelength is None:
        raise ValueError(f"{product.key}: no co-add to write (every scaled exposure was rejected)")
    by_name = {Path(p).name: Path(p) for p in scaled_paths}
    kept = [str(by_name[name]) for name in product.kept]
    prod = _segment_list(wrapper, product.instrument, product.detector)
    _import_headers(prod, kept)
    # The attributes swrapper sets before writing (hasp.wrapper.create_products).
    prod.target = prod.get_targname()
    prod.targ_ra, prod.targ_dec, prod.epoch = prod.get_coords()
    prod.snrmax = product.snrmax
    prod.gratinglist = [product.grating]
    prod.disambiguated_grating = product.grating.lower()
    if product.grating in ("G230L", "G140L"):
        prod.disambiguated_grating = product.instrument.lower()[0] + product.grating.lower()
    prod.lifetime_position = wrapper.get_lifetime_position(prod.primary_headers[0])
    prod.output_wavelength = np.asarray(product.wavelength)
    prod.output_flux = np.asarray(product.flux)
    prod.output_errors = np.asarray(product.error)
    prod.signal_to_noise = np.asarray(product.snr)
    prod.output_exptime = np.asarray(product.eff_exptime)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # HASP's own primary header has a card whose comment astropy truncates (swrapper
    # warns the same); that is the archive's format, not news to the user.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        prod.write(str(tmp), True, level=LEVELS.get(product.level, ""))
        with fits.open(tmp, mode="update") as hdul:
            header = hdul[0].header
            header["FILENAME"] = (path.name, "Name of this file")
            for card in provenance_cards(remediation, source_sha256):
                header[card[0]] = card[1:]
    tmp.replace(path)
    return path
