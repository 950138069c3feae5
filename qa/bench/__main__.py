"""``python -m qa.bench``: the engine benchmark, or ``figures``/``report`` for the report side's."""
import sys

if sys.argv[1:2] in (["figures"], ["report"]):
    from qa.bench.report import main
else:
    from qa.bench.engine import main

sys.exit(main())
