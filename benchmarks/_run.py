"""Run a benchmark's ``main``: a problem the user can act on (no data folder, a bad coder spec, a
corpus that will not read) ends it with the one-line ``Error: ...`` the CLI prints, not a traceback."""

from __future__ import annotations

import sys


def run_main(main) -> None:
    """``main()``; a :class:`compbench.CompbenchError` exits 1 with its message on stderr."""
    from compbench.errors import CompbenchError

    try:
        result = main()
    except CompbenchError as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(result)
