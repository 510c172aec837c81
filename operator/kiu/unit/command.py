"""`kiu unit`: serve one model of a Triton-layout repository on the cpu runtime.

The flags and default ports are Triton's (8000 HTTP, 8001 gRPC, 8002
metrics), so one pod template and one client configuration serve both runtimes.
An s3:// repository is read as Triton reads it (`kiu.unit.mirror`): the model is
copied into TRITON_AWS_MOUNT_DIRECTORY, or a temporary directory, and loaded from there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from kiu import logs, options
from kiu.unit import mirror


def _parser() -> argparse.ArgumentParser:
    parser = options.parser(
        prog="kiu unit",
        description="Serve one model of a Triton model repository over KServe v2 "
        "(gRPC and HTTP) on the CPU, with onnxruntime.",
    )
    parser.add_argument(
        "--model-repository",
        required=True,
        help="the repository: a directory, or s3://[host:port/]bucket/path",
    )
    parser.add_argument("--model", required=True, help="the model to load and serve")
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default: %(default)s)")
    parser.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus port")
    parser.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        help="seconds to finish requests in flight after SIGTERM (default: %(default)s)",
    )
    options.add_logging(parser)
    return parser


def _server_module() -> ModuleType:
    """Import `kiu.unit.server` with an empty command line: kserve parses sys.argv when
    imported and would take `kiu unit`'s flags for its own."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return importlib.import_module("kiu.unit.server")
    finally:
        sys.argv = argv


def main(argv: list[str]) -> int:
    """Run the unit until SIGTERM; returns the exit code (0 after a clean drain)."""
    args = options.parse(_parser(), argv)
    logs.configure(level=args.log_level, format=args.log_format)
    with contextlib.ExitStack() as stack:
        try:
            repository = _local_repository(args.model_repository, args.model, stack)
        except mirror.MirrorError as error:
            return _failed(error)
        return _serve(args, repository)


def _failed(error: Exception) -> int:
    """One plain last line: what Kubernetes shows as the container's termination message
    (terminationMessagePolicy FallbackToLogsOnError), so the ProjectVersion's status
    carries the loader's or the store's own words."""
    print(f"kiu unit: {error}", file=sys.stderr, flush=True)
    return 1


def _local_repository(repository: str, model: str, stack: contextlib.ExitStack) -> Path:
    """The directory to load from: the one given, or the copy of an s3:// repository's model
    in TRITON_AWS_MOUNT_DIRECTORY (the pod's cache), else in a temporary directory."""
    if "://" not in repository:
        return Path(repository).resolve()
    if not repository.startswith(mirror.SCHEME):
        raise mirror.MirrorError(
            f"{repository}: the cpu runtime reads s3:// object storage or a directory; "
            "gs:// and as:// are read by Triton"
        )
    cache = os.environ.get("TRITON_AWS_MOUNT_DIRECTORY")
    if not cache:
        cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="kiu-models-"))
    return mirror.mirror(repository, model, Path(cache))


def _serve(args: argparse.Namespace, repository: Path) -> int:
    server = _server_module()
    for noisy in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = asyncio.run(
            server.serve(
                model_repository=repository,
                model_name=args.model,
                host=args.host,
                http_port=args.http_port,
                grpc_port=args.grpc_port,
                metrics_port=args.metrics_port,
                grace_period=args.grace_period,
            )
        )
    except server.ModelLoadError as error:
        return _failed(error)
    return code
