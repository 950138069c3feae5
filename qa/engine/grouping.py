"""Which files HASP co-adds together: visit, program and cross-program products.

Mirrors the mode bookkeeping of ``hasp.wrapper.main``/``create_products``: files
sorted by path, grouped per (instrument, grating, detector, target) and visit or
program, products ordered by visit/program, then target and mode in order of
first appearance.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qa.io.model import Dataset
from qa.results import product_key

# hasp.wrapper.EXCLUDED_TARGETS: calibration targets that never get a product.
EXCLUDED_TARGETS = ("ANY", "WAVE")


@dataclass
class ProductPlan:
    """The inputs of one single-grating product before flux filtering."""

    level: str           # "visit", "program" or "cross-program"
    program: int
    visit: str
    instrument: str
    grating: str
    detector: str
    target: str          # TARGNAME as HASP groups by it (cross-program: the directory name)
    datasets: list[Dataset]


def is_moving_target(ds: Dataset) -> bool:
    """HASP leaves moving targets (MTFLAG = 'T') out of program products."""
    return ds.primary.get("MTFLAG") == "T"


def lifetime_position(ds: Dataset) -> int:
    """``hasp.wrapper.get_lifetime_position``: LIFE_ADJ when 1..10, else 0."""
    value = ds.primary.get("LIFE_ADJ", 0)
    return value if value in range(1, 11) else 0


def plan_products(datasets: list[Dataset], *, cross_program: bool = False,
                  moving_target_filter: bool = True,
                  cross_program_target: str | None = None) -> list[ProductPlan]:
    """Group pre-filtered datasets into the products HASP makes, in HASP's order.

    Parameters
    ----------
    datasets : list of Dataset
        Files that passed the keyword pre-filters.
    cross_program : bool
        Make ``swrapper -x`` products (per instrument, grating, detector and COS
        lifetime position, regardless of program and target) instead of visit
        and program products.
    moving_target_filter : bool
        Leave MTFLAG = 'T' files out of program and cross-program products.
    cross_program_target : str, optional
        Target name of cross-program products (HASP uses the input directory name).
    """
    datasets = sorted(datasets, key=lambda d: str(d.path))
    if cross_program:
        return _cross_program(datasets, moving_target_filter, cross_program_target)
    visits: dict[tuple, list[Dataset]] = {}
    programs: dict[tuple, list[Dataset]] = {}
    for ds in datasets:
        mode = (ds.instrument, ds.grating, ds.detector, str(ds.primary["TARGNAME"]))
        visits.setdefault(mode + ((ds.program, ds.visit),), []).append(ds)
        programs.setdefault(mode + (ds.program,), []).append(ds)
    plans = []
    for (program, visit) in sorted({k[4] for k in visits}):
        plans += _level_plans("visit", visits, (program, visit), program, visit, False)
    for program in sorted({k[4] for k in programs}):
        plans += _level_plans("program", programs, program, program, "", moving_target_filter)
    return plans


def _level_plans(level: str, groups: dict, which, program: int, visit: str,
                 drop_moving: bool) -> list[ProductPlan]:
    keys = [k for k in groups if k[4] == which]
    targets = list(dict.fromkeys(k[3] for k in keys))
    plans = []
    for target in targets:
        if target in EXCLUDED_TARGETS:
            continue
        for key in (k for k in keys if k[3] == target):
            files = groups[key]
            if drop_moving:
                files = [d for d in files if not is_moving_target(d)]
            if not files:
                continue  # HASP: "No good files", no co-add is attempted
            plans.append(ProductPlan(level=level, program=program, visit=visit, instrument=key[0],
                                     grating=key[1], detector=key[2], target=target,
                                     datasets=list(files)))
    return plans


def _cross_program(datasets: list[Dataset], drop_moving: bool,
                   target: str | None) -> list[ProductPlan]:
    groups: dict[tuple, list[Dataset]] = {}
    for ds in datasets:
        key = (ds.instrument, ds.grating, ds.detector, lifetime_position(ds))
        groups.setdefault(key, []).append(ds)
    if target is None:
        target = Path(datasets[0].path).resolve().parent.name if datasets else ""
    plans = []
    for (instrument, grating, detector, _lp), files in groups.items():
        if drop_moving:
            files = [d for d in files if not is_moving_target(d)]
        if not files:
            continue
        programs = sorted({d.program for d in files})
        plans.append(ProductPlan(level="cross-program", program=programs[0], visit="",
                                 instrument=instrument, grating=grating, detector=detector,
                                 target=target, datasets=list(files)))
    return plans


def sanitize_target(name: str) -> str:
    """HASP's file-name form of a target: '.'->'d', '+'->'p', '_'->'-'."""
    return name.replace(".", "d").replace("+", "p").replace("_", "-")


def product_filename(plan: ProductPlan, kept: list[Dataset]) -> str:
    """The ``cspec`` file name HASP writes for this product (``create_output_file_name``)."""
    if not kept:
        return ""
    instrument = plan.instrument.lower()
    grating = plan.grating.lower()
    if plan.grating in ("G230L", "G140L"):
        grating = instrument[0] + grating
    targnames = list(dict.fromkeys(str(d.primary["TARGNAME"]).strip() for d in kept))
    target = targnames[0] if len(targnames) == 1 else str(kept[0].primary["TARGNAME"])
    if plan.level == "cross-program":
        target = sanitize_target(plan.target.lower())
        if instrument == "cos":
            return f"hst_{instrument}_{target}_{grating}-lp{lifetime_position(kept[0]):02d}_cspec.fits"
        return f"hst_{instrument}_{target}_{grating}_cspec.fits"
    target = sanitize_target(target.lower())
    rootname = str(kept[-1].primary.get("ROOTNAME", kept[-1].name[:9]))
    root = rootname[:6] if plan.level == "visit" else rootname[:4]
    return f"hst_{kept[-1].program}_{instrument}_{target}_{grating}_{root}_cspec.fits"


def product_keys_of(ds: Dataset) -> list[str]:
    """Keys of the visit and program products a file belongs to (for keyword-filtered files)."""
    mode = f"{ds.instrument}/{ds.grating}"
    target = str(ds.primary["TARGNAME"])
    return [product_key(ds.program, target, mode, "visit", ds.visit),
            product_key(ds.program, target, mode, "program", "")]
