"""``raftkv``: start one member with etcd's flags (see ``raftkv.config``), serving the client
API (``raftkv.api``) over it: the one place the member and its client API are joined."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from raftkv.config import FLAGS, ConfigError, UsageError, load_settings

__all__ = ["main"]


def _usage() -> str:
    lines = ["Usage:", "", "  raftkv [flags]", "", "flags (etcd's names; also RAFTKV_<FLAG>):"]
    lines += [f"  --{name}" for name in sorted(FLAGS)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_settings(args)
    except UsageError as e:
        if str(e) == "help":
            print(_usage())
            return 0
        if str(e) == "version":
            from raftkv import __version__

            print(f"raftkv Version: {__version__}\netcd API Version: 3.4")
            return 0
        print(str(e), file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"raftkv: error verifying flags, {e}. See 'raftkv --help'.", file=sys.stderr)
        return 1

    from raftkv.api import serve_clients
    from raftkv.backend import BackendError
    from raftkv.log import setup_logging
    from raftkv.server.member import run_member
    from raftkv.server.storage import StartupError
    from raftkv.snap import SnapError
    from raftkv.wal import WalError

    setup_logging(cfg.log_level, member=cfg.name)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        return runner(run_member(cfg, serve_clients))
    except (StartupError, WalError, BackendError, SnapError) as e:
        # damaged or foreign data: say which file and stop before serving anything
        print(f"raftkv: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"raftkv: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
