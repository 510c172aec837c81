"""kiu: Kubernetes Inference Units."""

from importlib import metadata

try:
    __version__ = metadata.version("kiu")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
