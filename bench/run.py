"""Run benchmarks and regenerate bench/README.md from their results.

    python -m bench.run                      # all, in order
    python -m bench.run gateway tps          # some
    python -m bench.run --report             # only regenerate bench/README.md
    python -m bench.run --quick autoscaler   # shorter loads (a smoke test, not for results)

Each benchmark writes bench/results/<name>.json and .png. A benchmark that fails
leaves its previous results in place; the run goes on with the others and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback

from bench import common, report

# make target suffix -> module
BENCHMARKS = {
    "gateway": "bench.gateway",
    "tps": "bench.tps",
    "autoscaler": "bench.autoscaler",
    "e2e": "bench.e2e_autoscaling",
    "operator": "bench.operator_scale",
    "cold-start": "bench.cold_start",
    "unit": "bench.unit_cpu",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default all)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short loads, for a smoke test")
    parser.add_argument("--report", action="store_true", help="only regenerate bench/README.md")
    args = parser.parse_args(argv)
    # SIGTERM and SIGINT unwind through the benchmarks' finally blocks, which stop every
    # process they started and remove what they created (also when run in the background).
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    failed: list[str] = []
    if not args.report:
        for name in args.names or list(BENCHMARKS):
            module = importlib.import_module(BENCHMARKS[name])
            started = time.monotonic()
            common.log(f"{name}: start")
            try:
                result = module.run(quick=args.quick)
            except Exception:
                traceback.print_exc()
                common.log(f"{name}: FAILED after {time.monotonic() - started:.0f} s")
                failed.append(name)
                continue
            if result is None:  # prerequisites missing: said why, nothing written
                common.log(f"{name}: not run")
                continue
            result["duration_s"] = round(time.monotonic() - started, 1)
            path = common.write(module.NAME, result)
            common.log(f"{name}: done in {result['duration_s']:.0f} s -> {path}")
    report.write()
    common.log(f"wrote {report.README}")
    if failed:
        common.log(f"failed: {', '.join(failed)}")
        return 1
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
