"""Serve the tswitch demo: ``python app.py [--host HOST] [--port PORT] [--suites DIR[:DIR]]``.

Every suite under the ``assets/`` beside this file (or ``$TSWITCH_ASSETS``) is served, plus the folders in
``$TSWITCH_SUITES`` (and ``--suites``), from any working directory, with tswitch from this checkout or
installed (``pip install '.[app,suites]'``). Host and port default to ``$GRADIO_SERVER_NAME`` /
``$GRADIO_SERVER_PORT``, else 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse
import os
import sys

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
# read by tswitch.assets: an installed tswitch has no assets/ of its own, so the suites beside this file are named
os.environ.setdefault("TSWITCH_ASSETS", ASSETS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--suites", default="", help="extra suite folders, os.pathsep-separated")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("TSWITCH_CONCURRENCY", "2")),
        help="requests run at a time (default 2)",
    )
    args = parser.parse_args(argv)
    if args.suites:
        os.environ["TSWITCH_SUITES"] = os.pathsep.join(filter(None, [os.environ.get("TSWITCH_SUITES"), args.suites]))

    try:
        from tswitch.app.layout import build_demo, launch_options
    except ModuleNotFoundError as error:
        from tswitch.extras import missing

        hint = missing(error, "the demo")
        if hint is None:
            raise
        sys.exit(f"app.py: {hint}")

    from tswitch.app.process import bounded_malloc

    bounded_malloc()  # a server that fine-tunes: freed tensors go back to the system (tswitch/app/process.py)
    build_demo(concurrency_limit=args.concurrency).launch(**launch_options(args.host, args.port))


if __name__ == "__main__":
    main()
