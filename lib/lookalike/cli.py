"""Command line: ``lookalike run | find | weights | kernel | demo-server | params``.

The CLI only parses options and calls the library (the papermill ``cli.py`` habit). Bad
input never ends in a traceback: it is one line (or one line per parameter) naming the
parameter or file and the fix, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .exceptions import ConfigError, LookalikeError
from .paths import RunLayout

#: Exit code for bad input (a wrong parameter, config file or option), as argparse uses.
EXIT_USAGE = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks with parameters from a YAML config")
    run.add_argument("config", help="YAML parameter file, e.g. configs/example.yaml")
    run.add_argument("--run-dir", help="output folder (default: run_dir from the config)")
    run.add_argument("--from", dest="start", metavar="NN", help="first notebook, e.g. 03")
    run.add_argument("--to", dest="stop", metavar="NN", help="last notebook, e.g. 05")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter; VALUE is parsed as YAML (repeatable)",
    )
    run.add_argument("--no-html", action="store_true", help="skip the HTML reports")
    run.add_argument("--no-progress", action="store_true", help="no progress bars at the terminal")

    find = sub.add_parser(
        "find", help="the look-alikes in a run of image files, folders, URLs or domains"
    )
    find.add_argument("run_dir", metavar="RUN", help="a run folder that has been through 03")
    find.add_argument(
        "queries",
        nargs="+",
        metavar="QUERY",
        help="image file, folder, URL or domain (after --, a query may start with -)",
    )
    find.add_argument(
        "--name",
        default="find",
        help="names the results and their folder in the run (default: find)",
    )
    find.add_argument("--top", type=int, default=10, help="hits per query image (default: 10)")
    find.add_argument("--min-similarity", type=float, help="drop hits below this similarity")
    find.add_argument("--csv", action="store_true", help="also write the results as CSV")
    find.add_argument(
        "--labels",
        help="CSV with a column image_id, origin, path or file, and group: adds the precision",
    )
    find.add_argument(
        "--pairs",
        help="CSV whose first two columns name two images that look alike: adds the precision",
    )
    find.add_argument("--no-sheets", action="store_true", help="no contact sheets")
    find.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of the logo/URL fetch (as in 02: providers, proxy, timeout_s...)",
    )
    sub.add_parser(
        "weights",
        help="make sure the real VGG16 ImageNet weights are available "
        "(options: lookalike weights --help)",
        add_help=False,
    )
    sub.add_parser("kernel", help="register this environment as the 'lookalike' Jupyter kernel")
    params = sub.add_parser("params", help="every parameter with its default and description")
    params.add_argument("name", nargs="?", help="show only this parameter")
    params.add_argument(
        "--markdown", action="store_true", help="print the Markdown of docs/parameters.md"
    )
    demo = sub.add_parser("demo-server", help="serve the built-in demo web until Ctrl-C")
    demo.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .run import load_config, parse_overrides, run_pipeline

    run_dir = run_pipeline(
        load_config(args.config),
        run_dir=args.run_dir,
        start=args.start,
        stop=args.stop,
        overrides=parse_overrides(args.param),
        html=not args.no_html,
        progress=not args.no_progress,
    )
    run = RunLayout(run_dir)
    print(f"[lookalike] results in {run.root}")
    if run.gallery.exists():
        print(f"[lookalike] open {run.gallery} in a browser")
    if run.report_dir.exists():
        print(f"[lookalike] executed notebooks as HTML in {run.report_dir}")
    return 0


def _find(args: argparse.Namespace) -> int:
    from .find import find
    from .run import parse_overrides

    table = find(
        args.run_dir,
        args.queries,
        name=args.name,
        top=args.top,
        min_similarity=args.min_similarity,
        csv=args.csv,
        labels=args.labels,
        pairs=args.pairs,
        sheets=not args.no_sheets,
        fetch_options=parse_overrides(args.param),
    )
    shown = table[table["rank"] <= 3][["query", "rank", "label", "similarity", "share", "match"]]
    if len(shown):
        shown = shown.assign(query=[q.rsplit("/", 1)[-1] for q in shown["query"]])
        print(shown.to_string(index=False, max_colwidth=40))
        print(f"(the first 3 hits of each query; all {len(table)} in the results table)")
    return 0


def _params(args: argparse.Namespace) -> int:
    from . import paramdocs

    if args.markdown:
        print(paramdocs.markdown(), end="")
    elif args.name:
        print(paramdocs.describe(args.name))
    else:
        print(paramdocs.to_yaml(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lookalike`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["weights"]:  # its options belong to weights.main_weights
        from .weights import main_weights

        return main_weights(argv[1:])
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "find":
            return _find(args)
        if args.command == "kernel":
            from .run import ensure_kernel

            print(f"kernel '{ensure_kernel()}' registered for {sys.executable}")
            return 0
        if args.command == "params":
            return _params(args)
        if args.command == "demo-server":
            from .demo import main as demo_main

            return demo_main(["--port", str(args.port)])
    except ConfigError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
