"""The API over TLS: a certificate and key read from files, reloaded when they change.

The files are those of a ``kubernetes.io/tls`` Secret mounted as a volume
(``tls.crt``, ``tls.key``), which is what cert-manager writes; when the Secret is
renewed the kubelet swaps the files, and the next check loads them into the same
context, so new connections get the new certificate without a restart and
connections already open keep theirs. A pair that does not load (a half-written
swap) is logged and retried at the next check; the previous one stays in use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_RELOAD_SECONDS = 30.0


class Certificate:
    """A server TLS context (TLS 1.2 or newer) over a certificate and key on disk."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert = cert
        self._key = key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files()
        self.context.load_cert_chain(cert, key)  # a bad pair at start-up is fatal

    def _files(self) -> tuple[tuple[int, int, int], ...]:
        stats = (os.stat(path) for path in (self._cert, self._key))
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def reload(self) -> bool:
        """Load the pair again if either file changed; whether a new pair is in use."""
        try:
            stamp = self._files()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("cannot load the TLS certificate %s: %s", self._cert, exc)
            return False
        self._stamp = stamp
        log.info("TLS certificate %s reloaded", self._cert)
        return True

    async def follow(self, interval: float = DEFAULT_RELOAD_SECONDS) -> None:
        """Reload every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()
