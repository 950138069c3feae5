"""``hasp-qa``: commands outside pytest. ``hasp-qa history`` lists runs and builds the trend site.

    hasp-qa history [--history PATH|URL] [-n N] [--html DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qa.history.store import HistoryStore, display_name


def _default_store() -> str:
    return str(Path(os.environ.get("HASP_QA_CACHE", ".hasp-qa-cache")).resolve()
               / "history.sqlite")


def _history(args: argparse.Namespace) -> int:
    target = args.history or _default_store()
    if "://" not in target and not Path(target).is_file():
        print(f"hasp-qa history: no history store at {target} (run pytest with the plugin "
              "first, or give --history)", file=sys.stderr)
        return 2
    store = HistoryStore(target)
    try:
        listed = store.runs(limit=args.number)
        print(f"history {display_name(target)}: {len(listed)} most recent run(s)")
        print(f"{'run':>5}  {'started':<25}  {'status':<11}  {'exit':>4}  window / programs")
        for run in listed:
            window = f"{run.window_since} .. {run.window_until}" if run.window_until else "-"
            programs = ", ".join(f"{p['program']} ({p['reason']})" for p in run.programs)
            code = "-" if run.exit_status is None else str(run.exit_status)
            print(f"{run.id:>5}  {run.started:<25}  {run.status:<11}  {code:>4}  {window}"
                  + (f"  {programs}" if programs else ""))
        if args.html:
            from qa.render.site import build_site
            index = build_site(store, args.html)
            print(f"trend site: {index.resolve().as_uri()}")
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hasp-qa", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="list recent runs; --html builds the trend site")
    history.add_argument("--history", default=None, metavar="PATH|URL",
                         help="SQLite file or postgresql:// URL (default "
                              "$HASP_QA_CACHE/history.sqlite or .hasp-qa-cache/history.sqlite)")
    history.add_argument("-n", "--number", type=int, default=20, help="runs to list (default 20)")
    history.add_argument("--html", type=Path, default=None, metavar="DIR",
                         help="write the static trend site into DIR")
    args = parser.parse_args(argv)
    return _history(args)


if __name__ == "__main__":
    sys.exit(main())
