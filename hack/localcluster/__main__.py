"""python -m localcluster {up,down,status,stop,start,agent} (run by hack/cluster.sh)."""

from __future__ import annotations

import argparse
import signal
import sys

from . import config, launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster.sh")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the cluster (reuses a healthy one); prints KUBECONFIG=")
    sub.add_parser("down", help="stop everything up started")
    status = sub.add_parser("status", help="components, nodes and the agent")
    status.add_argument("-q", "--quiet", action="store_true", help="only the exit code")
    for verb, what in (("stop", "stop"), ("start", "start again")):
        one = sub.add_parser(verb, help=f"{what} one component of the running cluster")
        one.add_argument("component", choices=[c.name for c in launcher.COMPONENTS])
    agent = sub.add_parser("agent", help="run the node agent in the foreground")
    agent.add_argument("--state", help="the state folder (informational; see KIU_STATE_DIR)")
    args = parser.parse_args(argv)
    lay = config.layout()
    if args.cmd == "up":
        launcher.up(lay)
        return 0
    if args.cmd == "down":
        launcher.down(lay)
        return 0
    if args.cmd == "stop":
        launcher.stop_component(lay, args.component)
        return 0
    if args.cmd == "start":
        launcher.start_component(lay, args.component)
        return 0
    if args.cmd == "status":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `status | head` is fine
        if args.quiet:
            return 0 if launcher.healthy(lay) else 1
        return launcher.status(lay)
    from .agent import main as agent_main

    return agent_main.run(lay)


if __name__ == "__main__":
    sys.exit(main())
