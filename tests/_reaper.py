"""Kill what a test process leaves behind when it dies without cleaning up.

Run as ``python _reaper.py PID`` with a pipe on standard input. It keeps a list of
every process descended from PID (refreshed a few times a second, so a kernel whose
server died first stays on the list), and when the pipe closes, which happens
however PID ends, SIGKILL included, it terminates the ones still alive, then kills
those that ignore SIGTERM. Writing ``release`` to the pipe ends it without killing
anything: the test cleaned up itself; ``watch PID`` names a process it should know
about at once (a server just started), before its next scan.

It lives in a session of its own, so a Ctrl-C in the terminal does not reach it, and
it never touches a process it did not see descend from PID (psutil checks the start
time, so a reused pid is safe).
"""
from __future__ import annotations

import os
import select
import sys

import psutil

POLL_S = 0.5
TERM_GRACE_S = 5.0


def _descendants(roots: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
    """Every live process whose ancestry runs through one of ``roots`` (one scan of the table)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    found, todo = {}, list(roots)
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid in found or pid in roots or pid == os.getpid():
                continue
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            todo.append(pid)
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watch(pid: int) -> list[int]:
    """Watch ``pid`` until standard input closes; return the pids that had to be stopped.

    Lines on standard input: ``watch PID`` adds a process (and its descendants) at once,
    without waiting for the next scan; ``release`` ends the watch. ``ready`` is written
    to standard output once the first scan is done.
    """
    try:
        watched = {pid: psutil.Process(pid)}
    except psutil.NoSuchProcess:
        watched = {}
    known: dict[int, psutil.Process] = {}

    def scan():
        live = {p: proc for p, proc in {**watched, **known}.items() if _alive(proc)}
        known.update(_descendants(live))

    scan()
    print("ready", flush=True)
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], POLL_S)
        if readable:
            data = os.read(0, 4096)
            if not data:
                break  # the test process is gone (or dropped the pipe): clean up
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip() == b"release":
                    return []
                if line.startswith(b"watch "):
                    try:
                        proc = psutil.Process(int(line.split()[1]))
                        known[proc.pid] = proc
                    except (ValueError, psutil.NoSuchProcess):
                        pass
        scan()
    scan()  # what the survivors started since the last scan
    alive = [proc for proc in known.values() if _alive(proc)]
    stop_processes(alive, TERM_GRACE_S, terminate=True)
    return [proc.pid for proc in alive]


def stop_processes(procs: list[psutil.Process], grace_s: float, terminate: bool = False) -> list[int]:
    """Give ``procs`` ``grace_s`` seconds to end (after a SIGTERM if ``terminate``), then
    SIGKILL the rest; returns the pids that had to be killed."""
    if terminate:
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
    _, stubborn = psutil.wait_procs(procs, timeout=grace_s)
    for proc in stubborn:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(stubborn, timeout=5)
    return [proc.pid for proc in stubborn]


if __name__ == "__main__":
    stopped = watch(int(sys.argv[1]))
    if stopped:
        print(f"reaper: stopped {len(stopped)} process(es) left behind by pid {sys.argv[1]}: {stopped}",
              file=sys.stderr)
