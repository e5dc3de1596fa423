"""The socket's security: a Unix socket created 0660 and never wider, and who is on the other end.

``SO_PEERCRED`` gives the connecting process's pid, effective uid and gid, from the kernel;
``SO_PEERGROUPS`` its supplementary groups (the socket file's group permission honours those
too, so ``--allow-gid`` does as well).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from safety.client.base import peercred
from safety.errors import ServiceError

SOCKET_MODE = 0o660

__all__ = ["SOCKET_MODE", "bind_unix", "peer_groups", "peercred"]


# SO_PEERGROUPS (Linux 4.13+): the peer's supplementary groups, which the socket file's group
# permission honours too; Python's socket module has no name for it.
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def peer_groups(sock: Any) -> set[int]:
    """The peer's supplementary groups; empty where the kernel cannot say."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 256)
    except OSError:  # an older kernel, or more than 256 groups: only the primary gid counts
        return set()
    return set(struct.unpack(f"{len(raw) // 4}I", raw))


def _remove_stale(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # another server starting at the same time removed it first
    except OSError as exc:  # another user's socket in a sticky directory (/tmp), a read-only one
        raise ServiceError(
            f"cannot remove the stale socket {path} (uid {path.lstat().st_uid}): {exc.strerror}; remove it as its "
            "owner or choose another --socket",
            code="socket-in-use",
        ) from None


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0660, never briefly wider.

    A socket file left by a server that died is removed; one a live server answers on is not.
    """
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ServiceError(f"{path} exists and is not a socket; not touching it", code="socket-in-use")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(str(path))
        except PermissionError:
            owner = path.lstat().st_uid
            raise ServiceError(
                f"{path} belongs to uid {owner} and this user may not connect to it, so cannot tell whether a "
                "server listens there; remove it (as its owner) or choose another --socket",
                code="socket-in-use",
            ) from None
        except OSError:
            _remove_stale(path)  # nobody listens: a stale socket from a server that was killed
        else:
            raise ServiceError(f"another server is listening on {path}", code="socket-in-use")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file with the umask applied: mask everything 0660 does not allow
    # so there is no moment at which the socket is wider; chmod then makes it exact.
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot bind {path}: {exc}", code="socket-in-use") from exc
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    sock.listen(512)
    sock.setblocking(False)
    return sock
