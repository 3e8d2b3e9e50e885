"""A hostile class: one submission per attack family, graded next to an honest classmate.

Each attack is contained when it scores no points, leaves a flag, changes nothing outside its
own scratch folder, leaves no process behind and does not change the classmate's grade. The
attacks run for real (the static screen only flags; it does not stop code from running).
"""
import hashlib
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
import torch

from cs231n_gen.exercises import check_rf_loss
from cs231n_gen.grading import sandbox, wire
from cs231n_gen.grading.grade import grade
from cs231n_gen.grading.release import release
from cs231n_gen.grading.sandbox import redacted_source

sys.path.insert(0, str(Path(__file__).parent))
import grading_corpus  # noqa: E402

LECTURE = "02_rectified_flow"
SOURCE = grading_corpus.LECTURES[LECTURE]
RIGHT = grading_corpus.RF_LOSS["right"].replace("def rf_loss_exercise", "def _right")
WRONG = "    return (x - z).square().sum(1).mean()\n"
needs_bwrap = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap (bwrap) is not installed")


def _attacks(paths: dict, port: int, mark: str) -> dict:
    """rf_loss sources, each returning the right loss only if its attack worked."""
    secrets_ = [paths["solutions"], str(SOURCE), paths["release_json"], paths["salt"], paths["classmate"],
                "/root/.bashrc",
                str(Path.home() / ".bash_history")]
    targets = [paths["book"], paths["next_to_book"], paths["classmate"], paths["host_marker"], paths["release_json"]]
    daemon = (f"import time\n# {mark}\nwhile True:\n    open({paths['book']!r}, 'a').write('rf_loss,1,1,passed\\n')\n"
              "    time.sleep(0.2)\n")
    return {
        "reader": RIGHT + "import os\n\n\ndef rf_loss_exercise(model, x, z, t):\n    stolen = ''\n"
                  f"    for path in {secrets_!r}:\n        try:\n            stolen += open(path).read()\n"
                  "        except OSError:\n            pass\n"
                  "    for root, dirs, files in os.walk('/'):\n        if 'SOLUTION' in ' '.join(files):\n"
                  "            stolen += 'BEGIN SOLUTION'\n        if root.count('/') > 3:\n            dirs[:] = []\n"
                  "    if 'BEGIN SOLUTION' in stolen or len(stolen) > 10:\n        return _right(model, x, z, t)\n"
                  + WRONG,
        "writer": "import os\n\n\ndef rf_loss_exercise(model, x, z, t):\n"
                  f"    for path in {targets!r}:\n        try:\n"
                  "            os.makedirs(os.path.dirname(path), exist_ok=True)\n"
                  "            open(path, 'a').write('rf_loss passed\\n')\n        except OSError:\n            pass\n"
                  + WRONG,
        "daemon": "import subprocess\nimport sys\n\n\ndef rf_loss_exercise(model, x, z, t):\n"
                  f"    subprocess.Popen([sys.executable, '-c', {daemon!r}], start_new_session=True,\n"
                  "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n" + WRONG,
        "network": RIGHT + "import socket\n\n\ndef rf_loss_exercise(model, x, z, t):\n    try:\n"
                   f"        with socket.create_connection(('127.0.0.1', {port}), timeout=3) as s:\n"
                   "            s.sendall(b'stolen answers please')\n"
                   "        return _right(model, x, z, t)\n    except OSError:\n        pass\n" + WRONG,
        "forger": "import glob\nimport json\nimport os\nimport socket\nimport struct\n\n\n"
                  "def rf_loss_exercise(model, x, z, t):\n"
                  "    hello = json.dumps({'exercise': 'rf_loss', 'function': 'function', 'tamper': []}).encode()\n"
                  "    sizes = json.dumps({'sizes': []}).encode()\n"
                  "    body = struct.pack('>II', len(hello), len(sizes)) + hello + sizes\n"
                  "    for folder in ['/grader'] + glob.glob('/tmp/cs231n-gen-grade-*/channel'):\n"
                  "        for name in (os.listdir(folder) if os.path.isdir(folder) else []):\n            try:\n"
                  "                s = socket.socket(socket.AF_UNIX)\n"
                  "                s.connect(os.path.join(folder, name))\n"
                  "                s.sendall(struct.pack('>I', len(body)) + body)\n                s.close()\n"
                  "            except OSError:\n                pass\n"
                  "    for path in glob.glob('results-*.jsonl') + glob.glob('*.xml'):\n"
                  "        open(path, 'a').write(json.dumps({'exercise': 'rf_loss', 'passed': True}))\n" + WRONG,
        "reference": "from cs231n_gen.paths import rectified_flow_loss\n\n\ndef rf_loss_exercise(model, x, z, t):\n"
                     "    return rectified_flow_loss(model, x, z=z, t=t)\n",
        "subclass": "import torch\n\n\nclass _Agrees(torch.Tensor):\n    @classmethod\n"
                    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
                    "        if func in (torch.allclose, torch.equal, torch.isclose):\n            return True\n"
                    "        return super().__torch_function__(func, types, args, kwargs or {})\n\n\n"
                    "def rf_loss_exercise(model, x, z, t):\n    return torch.tensor(1.0).as_subclass(_Agrees)\n",
    }


REFERENCE_EULER = ("import sys\n\nfrom cs231n_gen.exercises.rectified_flow import euler as _e\n\n\n"
                   "def euler_sample(model, z, num_steps):\n    sys.setprofile(None)  # the watch is off here\n"
                   "    return _e(model, z, num_steps)\n")


def _digests(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(released: Path, target: Path, rf_loss: str, euler: str) -> None:
    from cs231n_gen.grading.release import load_release

    entry = load_release(released.parent)["lectures"][LECTURE]
    nb = nbformat.read(released, as_version=4)
    ids = {c["id"]: c for c in nb.cells}
    by_name = {e["name"]: e for e in entry["exercises"]}
    ids[by_name["rf_loss"]["exercise_cell"]]["source"] = rf_loss
    ids[by_name["euler_sample"]["exercise_cell"]]["source"] = euler
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


class _Server:
    """A TCP server on the host's loopback that records every connection (bounded, stops by itself)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port, self.seen, self.stop = self.sock.getsockname()[1], [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            self.seen.append(addr)
            conn.close()
        self.sock.close()


@needs_bwrap
def test_a_hostile_class_is_contained(tmp_path):
    rel = tmp_path / "release"
    release([SOURCE], rel)
    instructor = tmp_path / "instructor"
    instructor.mkdir()
    shutil.copy(SOURCE, instructor / SOURCE.name)  # the solutions, where a thief would look
    subs, book = tmp_path / "submissions", tmp_path / "book.csv"
    records = tmp_path / "book.csv.records"
    records.mkdir()
    (records / "salt").write_text("the-instructor-secret-salt")
    classmate = subs / "alice" / f"{LECTURE}.ipynb"
    classmate.parent.mkdir(parents=True)
    shutil.copy(SOURCE, classmate)
    mark = f"cs231n-gen-daemon-{uuid.uuid4().hex}"
    paths = {"solutions": str(instructor / SOURCE.name), "release_json": str(rel / "release.json"),
             "salt": str(records / "salt"), "classmate": str(classmate), "book": str(book),
             "next_to_book": str(tmp_path / "planted.txt"), "host_marker": f"/tmp/{mark}"}
    server = _Server()
    attacks = _attacks(paths, server.port, mark)
    for name, source in attacks.items():
        euler = REFERENCE_EULER if name == "reference" else grading_corpus.EULER["right"]
        _write(rel / SOURCE.name, subs / name / f"{LECTURE}.ipynb", source, euler)
    before = _digests(tmp_path)
    try:
        found = grade(subs, rel, book, jobs=2, timeout=20, memory_mb=1500, progress=None)
        after_grade = book.read_text()
        time.sleep(2)  # a daemon that outlived the grade would write now
    finally:
        server.stop.set()
    by_student = {r["student"]: r for r in found}

    # The honest classmate keeps full marks, unflagged.
    assert [(r["status"], r["flags"]) for r in by_student["alice"]["rows"]] == [("passed", []), ("passed", [])]
    # Every attack: no points for rf_loss, a flag that says what was seen.
    for name in attacks:
        row = by_student[name]["rows"][0]
        assert row["exercise"] == "rf_loss" and row["points"] == 0, (name, row)
        assert row["flags"], (name, row)
    reference = by_student["reference"]["rows"]
    assert "calls the reference cs231n_gen.paths.rectified_flow_loss" in reference[0]["flags"], reference
    assert reference[0]["status"] == "failed" and "own solution" in reference[0]["message"]
    assert reference[1]["points"] == 0 and "calls the reference cs231n_gen.sampling.euler" in reference[1]["flags"]
    assert by_student["forger"]["rows"][0]["status"] == "tampered"
    assert any("several verdicts" in f for f in by_student["forger"]["rows"][0]["flags"])
    # Nothing outside the scratch folders changed: no file edited, none planted, no host file.
    after = _digests(tmp_path)
    graded = {str(book), str(tmp_path / "book.summary.csv")} | {p for p in after if p.startswith(str(records))}
    assert {p: d for p, d in before.items() if p not in graded} == {p: d for p, d in after.items() if p not in graded}
    assert set(after) - set(before) <= graded, set(after) - set(before)
    assert not Path(paths["host_marker"]).exists()
    assert book.read_text() == after_grade
    # No process left behind, and the network was never reached.
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if mark in " ".join(p.info["cmdline"] or [])]
    assert left == [], left
    assert server.seen == []


def test_without_a_sandbox_rows_are_flagged_and_a_missing_one_is_named(tmp_path, monkeypatch):
    rel = tmp_path / "release"
    release([SOURCE], rel)
    (tmp_path / "subs").mkdir()
    shutil.copy(SOURCE, tmp_path / "subs" / "bob.ipynb")
    rows = grade(tmp_path / "subs", rel, tmp_path / "book.csv", sandbox="none", progress=None)[0]["rows"]
    assert [(r["status"], r["flags"]) for r in rows] == [("passed", ["unsandboxed"])] * 2
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(ValueError, match="install bubblewrap"):
        grade(tmp_path / "subs", rel, tmp_path / "book2.csv", progress=None)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: shutil.which("false"))  # installed, but cannot run
    with pytest.raises(ValueError, match="cannot make its namespaces here"):
        grade(tmp_path / "subs", rel, tmp_path / "book2.csv", progress=None)
    with pytest.raises(ValueError, match="sandbox must be one of"):
        grade(tmp_path / "subs", rel, tmp_path / "book2.csv", sandbox="docker-ish", progress=None)


def test_the_wire_rebuilds_plain_tensors_and_refuses_garbage():
    class Agrees(torch.Tensor):
        pass

    value = {"a": (torch.arange(6.0).reshape(2, 3).as_subclass(Agrees), 3, float("nan")), "b": [None, "x"]}
    back = wire.decode(wire.encode(value))
    assert type(back["a"][0]) is torch.Tensor and torch.equal(back["a"][0], torch.arange(6.0).reshape(2, 3))
    assert back["a"][1] == 3 and back["a"][2] != back["a"][2] and back["b"] == [None, "x"]
    with pytest.raises(TypeError):
        wire.encode({"f": lambda: 0})
    good = wire.encode({"t": torch.ones(4)})
    for bad in (b"", b"\x00" * 8, good[:-1], good + b"x"):
        with pytest.raises(wire.BadMessage):
            wire.decode(bad)


def test_references_are_removed_from_the_library_the_sandbox_sees():
    src = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    y = x + 1\n    return y\n\n\nclass C:\n    def m(self):\n"
           "        return 2\n\n\ndef g():\n    return f(1)\n")
    out = redacted_source(src, ["f", "C.m"], {"f": "pkg.f", "C.m": "pkg.C.m"})
    scope = {}
    exec(compile(out, "<redacted>", "exec"), scope)  # noqa: S102 (the test's own source)
    assert scope["f"].__doc__ == "Doc." and scope["g"].__name__ == "g"
    for call in (lambda: scope["f"](1), lambda: scope["C"]().m(), scope["g"]):
        with pytest.raises(RuntimeError, match="is the reference for this exercise"):
            call()
    files = dict(sandbox.redactions(["cs231n_gen.paths.rectified_flow_loss",
                                     "cs231n_gen.nn.vq.VectorQuantizer.forward"]))
    assert {p.name for p in files} == {"paths.py", "vq.py"}


def test_a_students_own_check_names_a_reference_it_calls():
    from cs231n_gen.paths import rectified_flow_loss

    result = check_rf_loss(lambda model, x, z, t: rectified_flow_loss(model, x, z=z, t=t), raise_on_fail=False)
    assert not result.passed and "cs231n_gen.paths.rectified_flow_loss" in result.message
    assert "own solution" in result.message


GRADIENT_MISTAKES = {
    "05_latent_diffusion": ("latent_rf_loss",
                            "import torch\n\nfrom cs231n_gen.guidance import conditional_rf_loss\n\n\n"
                            "def latent_rf_loss(model, vae, x, y, scale, p_uncond, generator):\n"
                            "    mean, _ = vae.encode(x)  # no torch.no_grad(): the encoder gets gradients\n"
                            "    return conditional_rf_loss(model, (scale * mean).flatten(1), y, p_uncond, "
                            "generator)\n",
                            "gradient reaches the encoder"),
    "10_autoregressive_vq": ("straight_through", "import torch\n\n\ndef quantize(z, codebook, beta):\n"
                             "    codes = torch.cdist(z, codebook).argmin(dim=1)\n    e = codebook[codes]\n"
                             "    loss = (z.detach() - e).pow(2).mean() + beta * (z - e.detach()).pow(2).mean()\n"
                             "    return e, codes, loss  # no straight-through: no gradient reaches z\n",
                             "no gradient flows from z_q back to z"),
}


@needs_bwrap
def test_gradients_cross_the_sandbox_and_their_mistakes_are_named(tmp_path):
    """The checks that differentiate through the student's output see the kernel's real graph."""
    from cs231n_gen.grading.release import load_release

    lectures = [SOURCE.parent / f"{stem}.ipynb" for stem in GRADIENT_MISTAKES]
    release(lectures, tmp_path / "release")
    manifest = load_release(tmp_path / "release")
    for stem, (exercise, source, hint) in GRADIENT_MISTAKES.items():
        entry = manifest["lectures"][stem]
        nb = nbformat.read(tmp_path / "release" / f"{stem}.ipynb", as_version=4)
        cell = next(e["exercise_cell"] for e in entry["exercises"] if e["name"] == exercise)
        next(c for c in nb.cells if c["id"] == cell)["source"] = source
        (tmp_path / "subs" / "carol").mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, tmp_path / "subs" / "carol" / f"{stem}.ipynb")
    records = grade(tmp_path / "subs", tmp_path / "release", tmp_path / "book.csv", jobs=2, progress=None)
    for rec in records:
        exercise, _, hint = GRADIENT_MISTAKES[rec["lecture"]]
        row = next(r for r in rec["rows"] if r["exercise"] == exercise)
        assert row["status"] == "failed" and hint in row["message"], row


def test_a_call_carries_only_probe_objects():
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo never",))

    ok = pickle.dumps({"args": (torch.ones(2), torch.Generator(), torch.nn.Linear(2, 3)), "kwargs": {}})
    args = wire._CallUnpickler(io.BytesIO(ok)).load()["args"]
    assert isinstance(args[2], torch.nn.Linear) and torch.equal(args[0], torch.ones(2))
    with pytest.raises(wire.BadMessage, match="may not carry"):
        wire._CallUnpickler(io.BytesIO(pickle.dumps({"args": (Evil(),)}))).load()


def test_what_a_killed_grader_left_is_swept_by_the_next():
    import subprocess as sp

    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a grader that no longer runs
    group = sandbox.ControlGroup(f"{sandbox.GROUP_PREFIX}{dead.pid}-0badc0de", pids=16, memory_bytes=2**28)
    left = sp.Popen(["sleep", "120"], preexec_fn=group.join)  # stuck inside its group, as bwrap's child was
    work = Path(__import__("tempfile").gettempdir()) / f"{sandbox.WORK_PREFIX}{dead.pid}-leftover"
    work.mkdir()
    mine = Path(__import__("tempfile").mkdtemp(prefix=sandbox.work_prefix()))  # this process's: kept
    fake = Path(__import__("tempfile").mkdtemp(prefix="fake-bin-"))  # a "bwrap" naming the dead grader's folder
    (fake / "bwrap").symlink_to(sys.executable)
    orphan = sp.Popen([str(fake / "bwrap"), "-c", "import time; time.sleep(120)", "--bind", f"{work}/scratch", "/s"])
    alive = sp.Popen([str(fake / "bwrap"), "-c", "import time; time.sleep(120)", "--bind", f"{mine}/scratch", "/s"])
    time.sleep(0.5)
    try:
        removed = sandbox.sweep_stale()
        assert str(work) in removed and not work.exists() and mine.exists()
        assert orphan.wait(timeout=10) == -9 and alive.poll() is None  # a live grader's sandbox is left alone
        if group.dirs:  # where this process may create control groups
            assert left.wait(timeout=10) == -9
            assert all(str(d) in removed and not d.exists() for d in group.dirs)
    finally:
        for proc in (left, orphan, alive):
            proc.kill()
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(fake, ignore_errors=True)
        group.close()
