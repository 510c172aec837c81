"""The ``kiu`` command: one entry point, one subcommand per process kind.

Subcommands are imported lazily so that ``kiu unit`` does not pay for kopf and
``kiu operator`` does not pay for onnxruntime: ``pip install kiu`` is the operator
and the gateway, ``kiu[unit]`` adds the cpu runtime.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import kiu

#: subcommand -> (module exposing ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("kiu.controller.command", "reconcile ProjectVersions into inference units"),
    "gateway": ("kiu.gateway.command", "serve the compatible API, enforce TPS, route to units"),
    "unit": ("kiu.unit.command", "serve a model repository over KServe v2 (cpu runtime)"),
    "model": ("kiu.unit.importer", "import your own ONNX model: kiu model import --help"),
    "calibrate": ("kiu.unit.calibration", "measure the TPS one running unit sustains"),
    "version": ("", "print the kiu version"),
}

#: What only the ``unit`` extra installs (the cpu runtime and its image processing).
UNIT_EXTRA_MODULES = frozenset({"kserve", "onnxruntime", "PIL"})


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: kiu <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'kiu <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in {"version", "--version"}:
        print(f"kiu {kiu.__version__}")
        return 0
    if name not in COMMANDS:
        print(f"kiu: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        code: int = module.main(rest)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in UNIT_EXTRA_MODULES:
            raise
        print(f"kiu {name}: needs the cpu runtime: pip install 'kiu[unit]'", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
