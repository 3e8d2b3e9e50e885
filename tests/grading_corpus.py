"""A corpus of submissions for the grader, generated from the lectures themselves.

``build(root)`` releases lectures 02 and 04 into ``root/release`` and writes
``root/submissions/<student>/<lecture>.ipynb``: each submission is the released notebook
with its exercise cells (and, for some, its other cells) changed the way a student
might change them. ``EXPECTED[student][exercise]`` is the verdict the grader must give:
(status, a fragment of the message, a fragment of the flags or None).

Run as a script (``python tests/grading_corpus.py OUT``) to look at the corpus.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LECTURES = {"02_rectified_flow": ROOT / "lectures" / "02_rectified_flow.ipynb",
            "04_noise_schedules": ROOT / "lectures" / "04_noise_schedules.ipynb"}

# ---------------------------------------------------------------- exercise sources
RF_LOSS = {
    "right": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = (1 - tt) * x + tt * z\n"
             "    return (model(xt, t) - (z - x)).square().sum(1).mean()\n",
    "sign": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = (1 - tt) * x + tt * z\n"
            "    return (model(xt, t) - (x - z)).square().sum(1).mean()\n",
    "time": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = tt * x + (1 - tt) * z\n"
            "    return (model(xt, t) - (z - x)).square().sum(1).mean()\n",
    "one_minus_t": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = (1 - tt) * x + tt * z\n"
                   "    return (model(xt, 1 - t) - (z - x)).square().sum(1).mean()\n",
    "sum": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = (1 - tt) * x + tt * z\n"
           "    return (model(xt, t) - (z - x)).square().sum()\n",
    "all_mean": "def rf_loss_exercise(model, x, z, t):\n    tt = t[:, None]\n    xt = (1 - tt) * x + tt * z\n"
                "    return (model(xt, t) - (z - x)).square().mean()\n",
}
RF_HINTS = {"sign": "wrong sign", "time": "time runs the wrong way", "one_minus_t": "1 - t",
            "sum": "summed over the batch",
            "all_mean": "averaged over coordinates"}


def _euler(times: str, update: str, steps: str = "range(num_steps)") -> str:
    return ("import torch\n\n\ndef euler_sample(model, z, num_steps):\n    x = z\n"
            f"    for i in {steps}:\n        t = torch.full((x.shape[0],), {times})\n        x = {update}\n"
            "    return x\n")


EULER = {
    "right": _euler("1 - i / num_steps", "x - model(x, t) / num_steps"),
    "forward": _euler("i / num_steps", "x - model(x, t) / num_steps"),
    "linspace": _euler("float(torch.linspace(1, 0, num_steps)[i])", "x - model(x, t) / num_steps"),
    "end": _euler("1 - (i + 1) / num_steps", "x - model(x, t) / num_steps"),
    "plus": _euler("1 - i / num_steps", "x + model(x, t) / num_steps"),
    "whole": _euler("1 - i / num_steps", "x - model(x, t)"),
    "count": _euler("1 - i / num_steps", "x - model(x, t) / num_steps", steps="range(num_steps + 1)"),
}
EULER_HINTS = {"forward": "walks time forwards", "linspace": "linspace", "end": "end of each step",
               "plus": "steps the wrong way", "whole": "whole velocity", "count": "called the model"}

LOGIT = {
    "right": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
             "    return torch.sigmoid(m + s * torch.randn(n, generator=generator))\n",
    "squared": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
               "    return torch.sigmoid(m + s * s * torch.randn(n, generator=generator))\n",
    "uniform": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
               "    return torch.sigmoid(m + s * torch.rand(n, generator=generator))\n",
    "location": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
                "    return torch.sigmoid(-m + s * torch.randn(n, generator=generator))\n",
    "no_generator": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
                    "    return torch.sigmoid(m + s * torch.randn(n))\n",
    "no_sigmoid": "import torch\n\n\ndef logit_normal(n, m, s, generator):\n"
                  "    return m + s * torch.randn(n, generator=generator)\n",
}
LOGIT_HINTS = {"squared": "s^2", "uniform": "torch.randn", "location": "wrong sign", "no_generator": "seeded alike",
               "no_sigmoid": "outside [0, 1]"}
SHIFT = {
    "right": "def shift(t, k):\n    return k * t / (1 + (k - 1) * t)\n",
    "inverse": "def shift(t, k):\n    return t / (k - (k - 1) * t)\n",
    "denominator": "def shift(t, k):\n    return k * t / (1 + k * t)\n",
    "clip": "def shift(t, k):\n    return (k * t).clamp(max=1.0)\n",
}
SHIFT_HINTS = {"inverse": "inverse shift", "denominator": "denominator", "clip": "clipping"}

WRONG_RF = "def rf_loss_exercise(model, x, z, t):\n    return (model(x, t) - z).square().sum(1).mean()\n"


def _memorised_rf_loss() -> str:
    """A solution that returns the loss of the check's default probe (seed 0): a memorised answer."""
    import torch

    from cs231n_gen.exercises import check_rf_loss

    seen = {}

    def spy(model, x, z, t):  # the right loss, remembered
        tt = t[:, None]
        seen["loss"] = float((model((1 - tt) * x + tt * z, t) - (z - x)).square().sum(1).mean())
        return torch.tensor(seen["loss"])

    assert check_rf_loss(spy, raise_on_fail=False).passed
    return f"import torch\n\n\ndef rf_loss_exercise(model, x, z, t):\n    return torch.tensor({seen['loss']!r})\n"


# ---------------------------------------------------------------- submissions
def _submissions():
    """(student, lecture, changes, expected) where changes maps exercise -> source or a special edit."""
    subs = []
    rf = {"rf_loss": RF_LOSS["right"], "euler_sample": EULER["right"]}
    ok = ("passed", "correct", None)
    subs.append(("correct02", "02_rectified_flow", None, {"rf_loss": ok, "euler_sample": ok}))
    subs.append(("empty02", "02_rectified_flow", {}, {e: ("failed", "not written yet", None) for e in rf}))
    rf_wrong, eu_wrong = [k for k in RF_LOSS if k != "right"], [k for k in EULER if k != "right"]
    for i in range(max(len(rf_wrong), len(eu_wrong))):
        changes, expected = {}, {}
        if i < len(rf_wrong):
            changes["rf_loss"] = RF_LOSS[rf_wrong[i]]
            expected["rf_loss"] = ("failed", RF_HINTS[rf_wrong[i]], None)
        else:
            changes["rf_loss"], expected["rf_loss"] = RF_LOSS["right"], ok
        changes["euler_sample"] = EULER[eu_wrong[i]]
        expected["euler_sample"] = ("failed", EULER_HINTS[eu_wrong[i]], None)
        subs.append((f"wrong02_{i}", "02_rectified_flow", changes, expected))

    # Tampering: each one a wrong rf_loss that the trick would otherwise let pass.
    tricks = {
        "edit_check": ({"rf_loss": WRONG_RF, "check_cell:rf_loss": "print('rf_loss is correct')\n"},
                       ("failed", "", "check cell edited (restored)")),
        "delete_check": ({"rf_loss": WRONG_RF, "delete_check:rf_loss": True},
                         ("failed", "", "check cell deleted (restored)")),
        "redefine": ({"rf_loss": WRONG_RF + "\n\ndef check_rf_loss(fn):\n    print('correct')\n"},
                     ("tampered", "", "redefines the check helper check_rf_loss")),
        "monkeypatch": ({"rf_loss": "import cs231n_gen.exercises\n" + WRONG_RF +
                         "\ncs231n_gen.exercises.check_rf_loss = lambda fn, **kw: None\n"},
                        ("tampered", "", "cs231n_gen.exercises.check_rf_loss was changed")),
        "setattr": ({"rf_loss": "import cs231n_gen.exercises.rectified_flow as rf\n" + WRONG_RF +
                     "\nsetattr(rf, 'close', lambda *a, **k: True)\n"},
                    ("tampered", "", "cs231n_gen.exercises.rectified_flow.close was changed")),
        "sys_modules": ({"rf_loss": "import sys\nimport types\n" + WRONG_RF +
                         "\nsys.modules['cs231n_gen.paths'] = types.SimpleNamespace()\n"},
                        ("tampered", "", "sys.modules['cs231n_gen.paths'] was replaced")),
        "builtins": ({"rf_loss": "import builtins\n" + WRONG_RF + "\nbuiltins.isinstance = lambda *a: True\n"},
                     ("tampered", "", "builtins.isinstance")),
        "library": ({"rf_loss": "import torch\nimport cs231n_gen.paths\n\n\ndef rf_loss_exercise(model, x, z, t):\n"
                                "    return torch.tensor(0.0)\n\n\n"
                                "cs231n_gen.paths.rectified_flow_loss = lambda *a, **k: torch.tensor(0.0)\n"},
                    ("tampered", "", "cs231n_gen.paths.rectified_flow_loss was changed")),
        "patch_when_called": ({"rf_loss": "def rf_loss_exercise(model, x, z, t):\n"
                                          "    from cs231n_gen.exercises import _harness as h\n"
                                          "    h.close = lambda *a, **k: True\n    return (x - z).sum()\n"},
                              ("tampered", "", "cs231n_gen.exercises._harness.close was changed")),
        "memorised": ({"rf_loss": _memorised_rf_loss()}, ("failed", "rf_loss", None)),
        "forged_verdict": ({"rf_loss": "import glob\nimport json\n" + WRONG_RF +
                            "\nfor p in glob.glob('results-*.jsonl'):\n    open(p, 'a').write(json.dumps("
                            "{'exercise': 'rf_loss', 'passed': True, 'message': 'x', 'tamper': [], "
                            "'token': 'guess'}) + '\\n')\n"}, ("failed", "", None)),
        "edit_lecture": ({"rf_loss": RF_LOSS["right"], "setup:": "raise RuntimeError('no setup for me')\n",
                          "add_cell": "x = 1\n"}, ("passed", "correct", "lecture cells edited (restored)")),
    }
    lasting = {"monkeypatch", "setattr", "sys_modules", "builtins", "library", "patch_when_called"}
    for name, (changes, verdict) in tricks.items():
        changes = {"euler_sample": EULER["right"], **changes}
        after = ("tampered", "not graded", None) if name in lasting else ok  # the library stays changed
        if name == "builtins":  # isinstance always True breaks the kernel itself
            after = ("crashed", "", None)
        subs.append((f"tamper02_{name}", "02_rectified_flow", changes, {"rf_loss": verdict, "euler_sample": after}))

    # Containment.
    hang = "def rf_loss_exercise(model, x, z, t):\n    while True:\n        pass\n"
    exit_ = "import os\n\n\ndef rf_loss_exercise(model, x, z, t):\n    os._exit(3)\n"
    hog = ("import torch\n\n\ndef rf_loss_exercise(model, x, z, t):\n    keep = []\n    while True:\n"
           "        keep.append(torch.ones(2**24))\n")
    raise_top = "raise RuntimeError('half-finished cell')\n" + RF_LOSS["right"]
    for name, src, status, fragment in (("timeout", hang, "timeout", ""), ("exit", exit_, "crashed", "kernel died"),
                                        ("memory", hog, "memory", "memory"),
                                        ("raises", raise_top, "failed", "not defined")):
        after = (status, "", None) if status in ("crashed", "memory") else ok  # an interrupted loop spares the rest
        subs.append((f"contain02_{name}", "02_rectified_flow", {"rf_loss": src, "euler_sample": EULER["right"]},
                     {"rf_loss": (status, fragment, None), "euler_sample": after}))
    subs.append(("garbage02", "02_rectified_flow", "not a notebook",
                 {e: ("crashed", "not a readable notebook", None) for e in rf}))

    # Lecture 04.
    sc = {"logit_normal": LOGIT["right"], "shift": SHIFT["right"]}
    subs.append(("correct04", "04_noise_schedules", None, {e: ok for e in sc}))
    subs.append(("empty04", "04_noise_schedules", {}, {e: ("failed", "not written yet", None) for e in sc}))
    lo_wrong, sh_wrong = [k for k in LOGIT if k != "right"], [k for k in SHIFT if k != "right"]
    for i, lo in enumerate(lo_wrong):
        changes = {"logit_normal": LOGIT[lo], "shift": SHIFT[sh_wrong[i]] if i < len(sh_wrong) else SHIFT["right"]}
        expected = {"logit_normal": ("failed", LOGIT_HINTS[lo], None),
                    "shift": ("failed", SHIFT_HINTS[sh_wrong[i]], None) if i < len(sh_wrong) else ok}
        subs.append((f"wrong04_{i}", "04_noise_schedules", changes, expected))
    return subs


def _apply(released, manifest_entry, changes):
    nb = copy.deepcopy(released)
    by_name = {e["name"]: e for e in manifest_entry["exercises"]}
    ids = {c["id"]: c for c in nb.cells}
    delete = set()
    for key, value in changes.items():
        if key.startswith("check_cell:"):
            ids[by_name[key.split(":")[1]]["check_cell"]]["source"] = value
        elif key.startswith("delete_check:"):
            delete.add(by_name[key.split(":")[1]]["check_cell"])
        elif key == "setup:":
            next(c for c in nb.cells if "setup" in c.metadata.get("tags", []))["source"] = value
        elif key == "add_cell":
            nb.cells.append(nbformat.v4.new_code_cell(value))
        else:
            ids[by_name[key]["exercise_cell"]]["source"] = value
    nb.cells = [c for c in nb.cells if c["id"] not in delete]
    return nb


def build(root) -> dict:
    """Release the corpus lectures and write every submission; return EXPECTED."""
    from cs231n_gen.grading.release import release

    root = Path(root)
    manifest = release(list(LECTURES.values()), root / "release")
    expected = {}
    for student, lecture, changes, verdicts in _submissions():
        target = root / "submissions" / student / f"{lecture}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        if changes is None:  # the solutions notebook itself
            target.write_bytes(LECTURES[lecture].read_bytes())
        elif changes == "not a notebook":
            target.write_text('{"cells": [ this is not json')
        else:
            released = nbformat.read(root / "release" / f"{lecture}.ipynb", as_version=4)
            nbformat.write(_apply(released, manifest["lectures"][lecture], changes), target)
        expected[(student, lecture)] = verdicts
    return expected


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "grading-corpus")
    exp = build(out)
    print(f"wrote {len(exp)} submissions under {out / 'submissions'} and the release under {out / 'release'}")
