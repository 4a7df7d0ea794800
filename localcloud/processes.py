"""Detached child processes that can be found again and stopped exactly, and port checks.

Each process is started in its own session (so its group is its pid) with two marker variables in
its environment, LOCALCLOUD_RUN_DIR and LOCALCLOUD_PART. Its record keeps the pid and the kernel's
start time of that pid, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

RUN_DIR_MARKER = "LOCALCLOUD_RUN_DIR"
PART_MARKER = "LOCALCLOUD_PART"

# Popen objects of children this Python process started, so stopping them also reaps them.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """A started part: enough to find it again from another process (``down``, ``status``)."""

    part: str
    pid: int
    start_time: int
    port: int
    log: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "ProcessRecord":
        return cls(str(data["part"]), int(data["pid"]), int(data["start_time"]), int(data["port"]), str(data["log"]))


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The pid's start time in clock ticks since boot, or None if no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _is_ours(pid: int, run_dir: Path) -> bool:
    return _environ(pid).get(RUN_DIR_MARKER) == str(run_dir)


def is_running(record: ProcessRecord, run_dir: Path) -> bool:
    """True when the recorded pid is alive, is the same process (start time) and carries our marker."""
    _reap(record.pid)
    return _alive(record.pid) and start_time(record.pid) == record.start_time and _is_ours(record.pid, run_dir)


def group_members(pgid: int, run_dir: Path) -> list[int]:
    """Live processes of a process group that carry this run directory's marker."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid and _is_ours(int(entry.name), run_dir):
            members.append(int(entry.name))
    return members


def spawn(part: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, run_dir: Path, port: int, cwd: Path | None = None) -> ProcessRecord:
    """Start a detached process (own session, output to its log) and return its record."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(env)
    child_env[RUN_DIR_MARKER] = str(run_dir)
    child_env[PART_MARKER] = part
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {part}: {' '.join(map(str, argv))}\n".encode())
        log.flush()
        process = subprocess.Popen(
            [str(a) for a in argv],
            env=child_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return ProcessRecord(part, process.pid, start_time(process.pid) or 0, port, str(log_path))


def exited(record: ProcessRecord) -> bool:
    """True if a process this Python process started has exited (a crash while starting up)."""
    process = _CHILDREN.get(record.pid)
    return process is not None and process.poll() is not None


def _reap(pid: int) -> None:
    process = _CHILDREN.get(pid)
    if process is not None and process.poll() is not None:
        _CHILDREN.pop(pid, None)


def stop(record: ProcessRecord, run_dir: Path, timeout: float = 5.0) -> bool:
    """Stop a recorded process and its group (SIGTERM, then SIGKILL); only processes carrying our marker.

    Returns True if something of ours was running.
    """
    pgid = record.pid
    leader_ours = is_running(record, run_dir)
    members = group_members(pgid, run_dir)
    if not leader_ours and not members:
        return False
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if leader_ours:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        for pid in members:  # also children left behind by a leader that already died
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        while time.monotonic() < deadline:
            _reap(record.pid)
            members = group_members(pgid, run_dir)
            leader_ours = is_running(record, run_dir)
            if not members and not leader_ours:
                return True
            time.sleep(0.05)
        deadline = time.monotonic() + timeout
    return True


def kill_marked(part: str, run_dir: Path) -> None:
    """SIGKILL every live process left that carries this run directory's and this part's markers.

    A function's instances are process groups of their own, started by its front end: this finds
    those a front end killed with SIGKILL could not stop.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        environ = _environ(pid)
        if environ.get(RUN_DIR_MARKER) == str(run_dir) and environ.get(PART_MARKER) == part and _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on host:port (binding fails with EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT after a recent `down` is free, not taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


#: Linux's default ephemeral range, if /proc does not say.
_DEFAULT_EPHEMERAL = (32768, 60999)
#: Below this, ports are conventionally fixed services'.
_LOWEST_PLANNED_PORT = 10000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks itself (``bind`` to port 0, outgoing connections)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def free_ports(count: int, host: str = "127.0.0.1", *, rng: random.Random | None = None) -> list[int]:
    """``count`` distinct ports nothing listens on now, outside the kernel's ephemeral range.

    A port found by binding port 0 and releasing it is in the ephemeral range, so the kernel may
    hand it to the next process that binds port 0 (a function instance) or connects out, before
    the part it was planned for starts: that part then dies with "Address already in use". Ports
    outside that range are only ever taken by someone asking for them by number.
    """
    low, high = ephemeral_range()
    candidates = [p for p in range(_LOWEST_PLANNED_PORT, 65536) if not low <= p <= high]
    (rng or random.Random()).shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if len(chosen) == count:
            break
        if not port_in_use(port, host):
            chosen.append(port)
    while len(chosen) < count:  # no room outside the range: the kernel's pick, distinct at least
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in chosen:
            chosen.append(port)
    return chosen


def answers_tcp(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
