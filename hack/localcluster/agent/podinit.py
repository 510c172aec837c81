"""Container entry: set up the container's view of the filesystem, then exec.

Run by the node agent as
    ip netns exec <netns> unshare --uts -- python -I -S podinit.py <spec.json> <argv...>
inside the pod's network namespace and a private mount namespace (ip netns exec
makes one). It bind-mounts every volume at its mountPath, sets the hostname,
changes to workingDir and execs the container's command.

Every mount source is opened before the first mount, so a volume mounted over
an ancestor of the agent's state folder (say an emptyDir at /work) cannot hide
the sources of later mounts. Standard library only; no site packages.
"""

import ctypes
import json
import os
import socket
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]


def _mount(src, dst, flags):
    if _libc.mount(src, dst.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {dst}: {os.strerror(err)}")


def main():
    spec_path, argv = sys.argv[1], sys.argv[2:]
    with open(spec_path) as f:
        spec = json.load(f)
    fds = [os.open(m["src"], os.O_PATH | os.O_CLOEXEC) for m in spec["mounts"]]
    for fd, m in zip(fds, spec["mounts"], strict=True):
        dst = m["dst"]
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(dst, exist_ok=True)
        elif not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
            open(dst, "a").close()
        _mount(f"/proc/self/fd/{fd}".encode(), dst, MS_BIND | MS_REC)
        if m.get("readOnly"):
            _mount(None, dst, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    if spec.get("workingDir"):
        os.makedirs(spec["workingDir"], exist_ok=True)
        os.chdir(spec["workingDir"])
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"exec {argv[0]!r}: {e.strerror}", file=sys.stderr)
        sys.exit(127 if isinstance(e, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
