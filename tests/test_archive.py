"""qa.archive.fetch against the loopback MAST server: the real astroquery client, nothing mocked."""
from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from astropy.io import fits

from qa.archive.fetch import (
    ArchiveError,
    ArchiveUnreachableError,
    DownloadFailedError,
    InvalidProgramError,
    NoSpectraError,
    OfflineCacheError,
    UnknownProgramError,
    fetch_program,
    resolve_mast_url,
)
from qa.archive.mast_server import DOWNLOAD_PATH, MastServer, copy_real_programs

REPO = Path(__file__).resolve().parents[1]
FAST = {"backoff": 0.01}  # keep retry waits short; the schedule itself is not under test
Start = Callable[..., MastServer]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(cache: Path) -> list[Path]:
    """Temporary download files or directories anywhere in the cache."""
    return [p for p in cache.rglob("*") if p.name.startswith(".download-")]


@pytest.fixture
def archive_root(real_dir: Path, tmp_path: Path) -> Path:
    """The real files laid out as the archive holds them: ``root/<program>/``."""
    return copy_real_programs(real_dir, tmp_path / "archive")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_full_program_download(archive_root: Path, cache: Path, mast_server: Start) -> None:
    # A COS-style co-add product next to the x1d files: listed by the archive, not a HASP input.
    shutil.copyfile(archive_root / "13346" / "ocb6f1020_x1d.fits",
                    archive_root / "13346" / "ocb6f1020_x1dsum.fits")
    server = mast_server(archive_root)

    result = fetch_program("13346", cache, mast_url=server.url, **FAST)

    names = ["ocb6f1020_x1d.fits", "ocb6i2020_x1d.fits"]
    assert [Path(f).name for f in result.files] == names
    assert result.directory == str(cache.resolve() / "13346")
    assert (result.downloaded, result.reused, result.missing) == (2, 0, [])
    assert server.downloads("ocb6f1020_x1dsum.fits") == 0
    manifest = json.loads(Path(result.manifest).read_text())
    assert manifest["mast_url"] == server.url and manifest["downloaded"] == names
    for product in manifest["products"]:
        source = archive_root / "13346" / product["filename"]
        assert product["sha256"] == sha256(source) == sha256(cache / "13346" / product["filename"])
        assert product["size"] == source.stat().st_size
        assert product["instrument"].startswith("STIS/")
    with fits.open(result.files[0]) as hdul:
        assert [h.name for h in hdul].count("SCI") == 2
    assert json.loads(result.to_json())["files"] == result.files
    assert leftovers(cache) == []


def test_second_run_reuses_cache_without_downloading(archive_root: Path, cache: Path,
                                                     mast_server: Start) -> None:
    server = mast_server(archive_root)
    fetch_program(13346, cache, mast_url=server.url, **FAST)
    before = [r for r in server.log if "Download" in r.path]

    again = fetch_program(13346, cache, mast_url=server.url, **FAST)

    assert (again.downloaded, again.reused) == (0, 2)
    assert [r for r in server.log if "Download" in r.path] == before  # no HEAD, no GET
    assert json.loads(Path(again.manifest).read_text())["reused"] == [
        "ocb6f1020_x1d.fits", "ocb6i2020_x1d.fits"]


def test_truncated_download_is_retried(archive_root: Path, cache: Path,
                                       mast_server: Start) -> None:
    server = mast_server(archive_root)
    # Short body with a matching Content-Length: astroquery's manifest says COMPLETE.
    server.truncate_once("o4vt02040_x1d.fits")

    result = fetch_program(8016, cache, mast_url=server.url, **FAST)

    assert server.downloads("o4vt02040_x1d.fits") == 2
    assert result.downloaded == 1 and result.missing == []
    assert sha256(Path(result.files[0])) == sha256(archive_root / "8016" / "o4vt02040_x1d.fits")
    assert leftovers(cache) == []


def test_one_product_failing_returns_the_rest(archive_root: Path, cache: Path,
                                              mast_server: Start) -> None:
    server = mast_server(archive_root)
    server.truncate_once("ocb6i2020_x1d.fits")

    result = fetch_program(13346, cache, mast_url=server.url, retries=0, **FAST)

    assert [Path(f).name for f in result.files] == ["ocb6f1020_x1d.fits"]
    assert [m.filename for m in result.missing] == ["ocb6i2020_x1d.fits"]
    assert "archive announced 1365120" in result.missing[0].reason
    assert not (cache / "13346" / "ocb6i2020_x1d.fits").exists()
    assert leftovers(cache) == []
    # The next run fetches only what is missing.
    healed = fetch_program(13346, cache, mast_url=server.url, **FAST)
    assert (healed.downloaded, healed.reused, healed.missing) == (1, 1, [])


def test_server_errors_then_recovers(archive_root: Path, cache: Path,
                                     mast_server: Start) -> None:
    server = mast_server(archive_root, fail_first=3)

    result = fetch_program(7096, cache, mast_url=server.url, retries=3, **FAST)

    assert result.downloaded == 1
    assert [r.status for r in server.log[:3]] == [500, 500, 500]


def test_server_errors_mid_download_then_recovers(archive_root: Path, cache: Path,
                                                  mast_server: Start) -> None:
    server = mast_server(archive_root)
    server.fail_next(2, path=DOWNLOAD_PATH)  # astroquery turns these into manifest ERRORs

    result = fetch_program(7096, cache, mast_url=server.url, retries=2, **FAST)

    assert result.downloaded == 1 and result.missing == []
    assert [r.status for r in server.log if r.path == DOWNLOAD_PATH] == [500, 500, 200, 200]
    assert leftovers(cache) == []


def test_stalled_server_times_out(archive_root: Path, cache: Path,
                                  mast_server: Start) -> None:
    server = mast_server(archive_root, download_delay=3.0)

    with pytest.raises(DownloadFailedError, match="ReadTimeout"):
        fetch_program(7096, cache, mast_url=server.url, retries=0, timeout=0.5, **FAST)
    assert list(cache.rglob("*.fits")) == [] and leftovers(cache) == []


def test_server_down(tmp_path: Path, archive_root: Path, cache: Path) -> None:
    with MastServer(archive_root) as server:
        url = server.url  # the port is closed once the server stops

    with pytest.raises(ArchiveUnreachableError) as info:
        fetch_program(8016, cache, mast_url=url, retries=2, **FAST)

    assert info.value.kind == "unreachable" and url in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert list(cache.rglob("*.fits")) == [] and leftovers(cache) == []
    assert not (cache / "8016" / "manifest.json").exists()


def test_unknown_program(archive_root: Path, cache: Path, mast_server: Start) -> None:
    server = mast_server(archive_root)
    with pytest.raises(UnknownProgramError, match="program 99999: MAST has no HST"):
        fetch_program("99999", cache, mast_url=server.url, **FAST)
    with pytest.raises(InvalidProgramError, match="not an HST proposal number"):
        fetch_program("../8016", cache, mast_url=server.url, **FAST)


def test_program_without_stis_or_cos(archive_root: Path, cache: Path,
                                     mast_server: Start) -> None:
    (archive_root / "11111").mkdir()
    with fits.open(archive_root / "8016" / "o4vt02040_x1d.fits") as hdul:
        hdul[0].header["INSTRUME"], hdul[0].header["DETECTOR"] = "WFC3", "UVIS"
        hdul.writeto(archive_root / "11111" / "iabc01010_x1d.fits")
    server = mast_server(archive_root)

    with pytest.raises(NoSpectraError, match="no STIS or COS spectra .*WFC3/UVIS"):
        fetch_program(11111, cache, mast_url=server.url, **FAST)


def test_unsafe_product_name_is_rejected(tmp_path: Path, archive_root: Path, cache: Path,
                                         mast_server: Start) -> None:
    server = mast_server(archive_root)
    source = archive_root / "8016" / "o4vt02040_x1d.fits"
    server.add_product("8016", "../../evil_x1d.fits", source)
    server.add_product("8016", "o4vt02040_x1d.fits.sh", source)

    result = fetch_program(8016, cache, mast_url=server.url, **FAST)

    assert [Path(f).name for f in result.files] == ["o4vt02040_x1d.fits"]
    reasons = {m.filename: m.reason for m in result.missing}
    assert "unsafe file name" in reasons["../../evil_x1d.fits"]
    assert "not an HST x1d/sx1 name" in reasons["o4vt02040_x1d.fits.sh"]
    assert list(tmp_path.rglob("evil*")) == []
    assert server.downloads() == 1  # the hostile products were never requested


def test_only_unsafe_products_fail_clearly(archive_root: Path, cache: Path,
                                           mast_server: Start) -> None:
    server = mast_server(archive_root)
    shutil.rmtree(archive_root / "7096")
    server.add_product("7096", "../o3zx02070_x1d.fits", archive_root / "8016" / "o4vt02040_x1d.fits")

    with pytest.raises(DownloadFailedError, match="none of 1 product") as info:
        fetch_program(7096, cache, mast_url=server.url, **FAST)
    assert [m.filename for m in info.value.missing] == ["../o3zx02070_x1d.fits"]


def test_two_processes_share_the_cache(archive_root: Path, cache: Path,
                                       mast_server: Start) -> None:
    server = mast_server(archive_root, download_delay=0.5)  # make the runs overlap
    script = ("import json, sys, time; from qa.archive.fetch import fetch_program; t0 = time.time(); "
              "r = fetch_program('13346', sys.argv[1], mast_url=sys.argv[2], backoff=0.01, "
              "lock_timeout=60); print(json.dumps([t0, time.time(), json.loads(r.to_json())]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(cache), server.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=REPO) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    starts, ends, results = zip(*(json.loads(out) for out, _ in outputs))
    assert max(starts) < min(ends), "the two runs did not overlap"
    assert sorted(r["downloaded"] for r in results) == [0, 2]
    assert sorted(r["reused"] for r in results) == [0, 2]
    assert results[0]["files"] == results[1]["files"]
    assert server.downloads("ocb6f1020_x1d.fits") == server.downloads("ocb6i2020_x1d.fits") == 1


def test_offline_with_full_cache_makes_no_request(archive_root: Path, cache: Path,
                                                  mast_server: Start) -> None:
    server = mast_server(archive_root)
    online = fetch_program(13346, cache, mast_url=server.url, **FAST)
    requests_before = len(server.log)

    offline = fetch_program(13346, cache, mast_url=server.url, offline=True)

    assert offline.files == online.files and offline.reused == 2
    assert len(server.log) == requests_before


def test_offline_without_cache_lists_what_is_missing(archive_root: Path, cache: Path,
                                                     mast_server: Start) -> None:
    with pytest.raises(OfflineCacheError, match="manifest.json does not exist"):
        fetch_program(13346, cache, offline=True)
    server = mast_server(archive_root)
    fetch_program(13346, cache, mast_url=server.url, **FAST)
    (cache / "13346" / "ocb6i2020_x1d.fits").unlink()
    with open(cache / "13346" / "ocb6f1020_x1d.fits", "r+b") as fh:
        fh.seek(5000)
        fh.write(b"garbage")
    requests_before = len(server.log)

    with pytest.raises(OfflineCacheError) as info:
        fetch_program(13346, cache, mast_url=server.url, offline=True)

    assert info.value.kind == "offline-missing"
    assert {m.filename: m.reason for m in info.value.missing} == {
        "ocb6f1020_x1d.fits": "checksum differs from manifest",
        "ocb6i2020_x1d.fits": "not in cache"}
    assert "ocb6i2020_x1d.fits (not in cache)" in str(info.value)
    assert len(server.log) == requests_before


def test_corrupt_cached_file_is_fetched_again(archive_root: Path, cache: Path,
                                              mast_server: Start) -> None:
    server = mast_server(archive_root)
    fetch_program(8016, cache, mast_url=server.url, **FAST)
    cached = cache / "8016" / "o4vt02040_x1d.fits"
    data = bytearray(cached.read_bytes())
    data[3000:3010] = b"XXXXXXXXXX"  # same size, different bytes
    cached.write_bytes(bytes(data))
    stale = cache / "8016" / ".download-interrupted"
    stale.mkdir()
    (stale / "o4vt02040_x1d.fits").write_bytes(b"half a file")

    result = fetch_program(8016, cache, mast_url=server.url, **FAST)

    assert result.downloaded == 1
    assert sha256(cached) == sha256(archive_root / "8016" / "o4vt02040_x1d.fits")
    assert leftovers(cache) == []


def test_mast_url_from_environment(archive_root: Path, cache: Path, mast_server: Start,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = mast_server(archive_root)
    monkeypatch.setenv("HASP_QA_MAST_URL", server.url + "/")
    assert resolve_mast_url() == server.url
    assert resolve_mast_url("http://example.invalid") == "http://example.invalid"

    result = fetch_program(14833, cache, **FAST)

    assert result.downloaded == 1 and server.downloads() == 1
    monkeypatch.setenv("HASP_QA_MAST_URL", "ftp://x")
    with pytest.raises(ArchiveError, match="must start with http"):
        resolve_mast_url()


def test_server_command_line(archive_root: Path, cache: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "qa.archive.mast_server", "--root",
                             str(archive_root)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the server printed no URL within 30 s"
        url = proc.stdout.readline().split(" at ")[1].strip()
        result = fetch_program(7096, cache, mast_url=url, **FAST)
        assert result.downloaded == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
