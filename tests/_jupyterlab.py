"""A throwaway JupyterLab server for browser tests, and a way to find a browser.

``LabServer`` starts ``jupyter lab`` from the interpreter running the tests (so the
kernels it starts use the environment under test), on 127.0.0.1 with a free port and
a random token, serving a private copy of the lectures (running cells in the browser
must never write outputs into the repository's notebooks). Its settings, workspaces
and runtime files live in a temporary folder too, so a person's own JupyterLab setup
cannot change what the test sees. ``shutdown_kernels()`` ends the kernels once a
notebook is checked, so they do not pile up; ``stop()`` shuts the server down and then
kills whatever it started that is still alive (kernels included): no stray processes
even when a test fails half way.

``Reaper`` covers the cases where no teardown runs at all (SIGKILL, a crash): a
watcher process that stops everything the test process started once it is gone.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from _reaper import stop_processes

BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# User settings the tests rely on: every cell stays in the DOM (JupyterLab 4 may
# otherwise leave off-screen cells unrendered), and no news/update toasts on top.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_browser() -> str | None:
    """Path of a Chromium-family browser: $CS231N_GEN_BROWSER, then the usual names."""
    explicit = os.environ.get("CS231N_GEN_BROWSER")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in BROWSER_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reaper:
    """A watcher (``_reaper.py``) that stops this process's descendants once it dies.

    ``release()`` when the test cleaned up after itself; until then, however this
    process ends, what it started does not outlive it.
    """

    def __init__(self):
        # Where it reports what it had to stop: $CS231N_GEN_REAPER_LOG, else this process's
        # stderr as it is now (pytest may be capturing it: the report then shows with the test).
        log_path = os.environ.get("CS231N_GEN_REAPER_LOG")
        log = open(log_path, "a") if log_path else None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("_reaper.py")), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        finally:
            if log is not None:
                log.close()
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the process watcher did not start (exit code {self.proc.wait()})")

    def watch(self, pid: int) -> None:
        """Name a process just started, so the watcher knows it before its next scan."""
        try:
            self.proc.stdin.write(f"watch {pid}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def watch_descendants(self) -> None:
        """Name every process this one has started so far (a browser just launched)."""
        for child in psutil.Process().children(recursive=True):
            if child.pid != self.proc.pid:
                self.watch(child.pid)

    def release(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"release\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.wait(timeout=10)


class LabServer:
    def __init__(self, notebooks: list[Path], workdir: Path, env: dict[str, str] | None = None,
                 reaper: Reaper | None = None):
        self.workdir = Path(workdir)
        self.reaper = reaper
        self.root = self.workdir / "lectures"
        self.root.mkdir(parents=True)
        for nb in notebooks:
            shutil.copy2(nb, self.root / nb.name)
        settings = self.workdir / "settings"
        for rel, value in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "jupyterlab.log"
        run_env = dict(os.environ)
        run_env.update(env or {})
        run_env["JUPYTER_RUNTIME_DIR"] = str(self.workdir / "runtime")
        run_env["JUPYTER_CONFIG_DIR"] = str(self.workdir / "config")
        self._cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
        ]
        self._env = run_env
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.children_at_stop: list[psutil.Process] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> "LabServer":
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self._cmd, cwd=self.root, env=self._env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if self.reaper is not None:
            self.reaper.watch(self.proc.pid)
        try:
            return self._wait_until_up(timeout)
        except BaseException:  # an interrupt while starting must not leave a server behind
            self.stop()
            raise

    def _wait_until_up(self, timeout: float) -> "LabServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> list[int]:
        """Shut everything down; returns the pids that had to be killed by force."""
        if self.proc is None:
            return []
        tree = []
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        if self.proc.poll() is None:
            try:  # the polite way: the server shuts its kernels down itself
                self.api("POST", "/api/shutdown", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        forced = stop_processes(tree, 10)  # kernels live in sessions of their own: one by one
        if self._log is not None:
            self._log.close()
        self.children_at_stop = tree
        return forced

    def kernel_pids(self) -> list[int]:
        """Pids of the kernels the server runs now: its children given a connection file in
        its runtime folder (other children, such as an extension's helper, are not kernels)."""
        runtime = self._env["JUPYTER_RUNTIME_DIR"]
        pids = []
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                if any(arg.startswith(runtime) for arg in child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                pass
        return pids

    def shutdown_kernels(self, timeout: float = 20.0) -> list[int]:
        """End every session and kernel; returns the kernel pids that had to be killed by force."""
        before = self.kernel_pids()
        try:
            for session in self._listing("/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=timeout)
            for kernel in self._listing("/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=timeout)
        except (urllib.error.URLError, OSError) as err:
            # A kernel interrupted while it starts can make the server answer 500 for a
            # while; the processes are then stopped directly (and count as forced).
            print(f"JupyterLab did not take the shutdown request ({err}); stopping kernels directly")
        procs = []
        for pid in dict.fromkeys(before + self.kernel_pids()):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return stop_processes(procs, timeout)

    def _listing(self, path: str, attempts: int = 5) -> list:
        """GET a list from the server, retrying a server error a few times."""
        for attempt in range(attempts):
            try:
                return self.api("GET", path) or []
            except urllib.error.HTTPError as err:
                if err.code < 500 or attempt == attempts - 1:
                    raise
                time.sleep(1.0)
        return []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers ---------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 5.0):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"
