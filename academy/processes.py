"""Child processes the platform starts itself (the demo's worker, the local hub): ports and stopping."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free on ``host``, else a port the system picks."""
    with socket.socket() as sock:
        try:
            sock.bind((host, preferred))
            return preferred
        except OSError:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own process group: its leader politely, then the whole group."""
    if proc.poll() is not None:
        return
    proc.terminate()  # Celery's warm shutdown: the leader stops its own pool
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the group that outlived its leader
