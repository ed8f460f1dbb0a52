"""``transferjs retrain --workers N``: the same command as N local worker processes on 127.0.0.1.

Each child gets a ``TF_CONFIG`` naming every worker's free loopback port and its own index, exactly as
a worker of a cluster would (README: the two-machine example). The chief (index 0) prints to this
terminal; the others write to temporary logs, shown when they fail. When one worker fails or is
killed, the others are stopped too (a collective all-reduce would wait for it forever) and the exit
code says what happened: the same command with ``--resume`` continues from the feature cache.

Example:
    >>> local_tf_configs(2)[1]
    '{"cluster": {"worker": ["127.0.0.1:40211", "127.0.0.1:40213"]}, "task": {"type": "worker", "index": 1}}'
    >>> run_local_workers([sys.executable, "-m", "transferjs.cli", "retrain", ...], 2)
    0
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (held open together so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(count: int) -> list[str]:
    """One ``TF_CONFIG`` per worker of a loopback cluster of ``count``."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(count)]


def run_local_workers(command: list[str], count: int) -> int:
    """Run ``command`` as ``count`` workers; the chief's exit code, or the first failing worker's.

    A worker killed by a signal gives 130 (interrupted; ``--resume`` continues), after every other
    worker is stopped.
    """
    logs = [None] + [tempfile.TemporaryFile() for _ in range(count - 1)]
    chief_err = _terminal_stderr()
    procs = [subprocess.Popen(command, env={**os.environ, "TF_CONFIG": config}, stdout=log,
                              stderr=log if log is not None else chief_err)
             for config, log in zip(local_tf_configs(count), logs)]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed or all(code == 0 for code in codes):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    if not failed:
        return 0
    rank, code = failed[0]
    if rank and logs[rank] is not None:
        logs[rank].seek(0)
        sys.stderr.write(f"--- worker {rank} ---\n" + logs[rank].read().decode(errors="replace")[-3000:])
    if code < 0:
        print(f"interrupted: worker {rank} of {count} was killed (signal {-code}); the others were stopped and "
              "nothing was written; the same command with --resume continues (features come from the cache)",
              file=sys.stderr)
        return 130
    return code


def _terminal_stderr():
    """Where this process's Python messages go (``sys.stderr``'s descriptor), for the chief's messages.

    The CLI points file descriptor 2 at the native-library log (``console.divert_native_stderr``);
    a child inheriting it would write its progress and notes there, not to the terminal.
    ``None`` (inherit descriptor 2) when ``sys.stderr`` has no descriptor (a captured stream).
    """
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None
