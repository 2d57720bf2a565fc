"""`glia-python-host`: runs unmodified Synapse modules for glia.

- `glia-python-host serve --config glia.yaml [--module NAME ...]`: serves the config's Python
  modules with `placement: nats` (or those named) over NATS, beside or instead of `glia worker`;
  start as many as you like, they share each module's load.
- `glia-python-host child`: one module for `glia serve` or `glia worker`, over a pipe (glia
  starts it; not for running by hand).
- `glia-python-host check`: runs modules' `parse_config` for `glia check-config` (glia runs it).
"""

from __future__ import annotations

import argparse
import logging
import sys

#: Log lines name the host and its process, since they land in glia's log.
LOG_FORMAT = "%(asctime)s %(levelname)s glia-python-host[%(process)d] %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and runs the command; exits with its status."""
    parser = argparse.ArgumentParser(prog="glia-python-host", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve Python modules over NATS")
    serve.add_argument("--config", required=True, help="glia's config file")
    serve.add_argument("--module", action="append", default=[], metavar="NAME", help="a module's name (repeatable)")
    commands.add_parser("child", help="serve one module to glia over a pipe (glia runs this)")
    commands.add_parser("check", help="check modules' configs for glia check-config (glia runs this)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)

    if args.command == "check":
        from glia_python_host import check

        sys.exit(check.run())

    if args.command == "child":
        from glia_python_host.parent import watch_parent

        watch_parent()

    # Before anything imports Twisted's reactor (Synapse does), put it on an asyncio loop.
    from glia_python_host import reactor

    reactor.install()
    if args.command == "child":
        from glia_python_host import child

        sys.exit(reactor.run(child.run()))

    from glia_python_host import glia_config, nats_host
    from glia_python_host.loader import LoadError

    try:
        config = glia_config.load(args.config, args.module)
    except glia_config.GliaConfigError as e:
        parser.exit(2, f"error: {e}\n")

    async def run() -> int:
        try:
            return await nats_host.serve(config)
        except LoadError as e:
            logging.getLogger(__name__).error("cannot load the module: %s", e)
            return 1

    sys.exit(reactor.run(run()))
