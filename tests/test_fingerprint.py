"""Function fingerprints are the same under every Python version and see only what computes."""
import ast
import hashlib
import importlib.util

from cs231n_gen.engine import callable_signature
from cs231n_gen.fingerprint import _syntax, code_digest, fingerprint


def _load(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


def _digest(fn):
    h = hashlib.sha256()
    code_digest(fn, h)
    return h.hexdigest()


def test_comments_layout_and_docstring_do_not_count_but_code_does(tmp_path):
    plain = _load(tmp_path, "plain", "def f(x, y=2):\n    return x * y + 1\n")
    dressed = _load(tmp_path, "dressed", 'def f(x, y=2):\n    """Doc."""\n\n    # a comment\n'
                                         "    return (x * y\n            + 1)  # another\n")
    changed = _load(tmp_path, "changed", "def f(x, y=2):\n    return x * y + 2\n")
    assert _digest(plain) == _digest(dressed)
    assert _digest(plain) != _digest(changed)
    assert callable_signature(plain).split("#")[1] == callable_signature(dressed).split("#")[1]
    assert callable_signature(plain) != callable_signature(changed)


def test_the_syntax_text_has_no_positions_or_contexts_and_drops_empty_fields():
    text = _syntax(ast.parse("def f(x):\n    'doc'\n    return x + 1\n"))
    assert text == ("Module(body=[FunctionDef(name='f',args=arguments(args=[arg(arg='x')]),"
                    "body=[Return(value=BinOp(left=Name(id='x'),op=Add(),right=Constant(value=1)))])])")


def test_two_lambdas_on_one_line_differ_and_a_lambda_is_its_statement(tmp_path):
    line = "f = [lambda m, b: m + b, lambda m, b: m - b]\n"
    pair = _load(tmp_path, "pair", line)
    moved = _load(tmp_path, "moved", "import math\n\n\n" + line)  # the same statement, lower down
    edited = _load(tmp_path, "edited", line.replace("m + b", "m + 2 * b"))
    assert _digest(pair[0]) != _digest(pair[1])
    assert [_digest(fn) for fn in moved] == [_digest(fn) for fn in pair]
    assert _digest(edited[0]) != _digest(pair[0])


def test_code_without_source_falls_back_to_its_bytecode():
    space_a, space_b = {}, {}
    exec("def f(x):\n    return x + 1\n", space_a)
    exec("def f(x):\n    return x + 2\n", space_b)
    assert _digest(space_a["f"]) != _digest(space_b["f"])
    assert fingerprint(space_a["f"]) != fingerprint(space_b["f"])


def test_an_attribute_is_not_a_global_read(tmp_path):
    """``x.device`` in a loss does not read a notebook's global ``device`` (which names the device)."""
    source = "device = {!r}\nscale = {}\n\ndef f(x):\n    return x.to(x.device) * scale\n"
    folders = [tmp_path / name for name in ("cpu", "gpu", "rescaled")]
    for folder in folders:
        folder.mkdir()
    on_cpu = _load(folders[0], "notebook", source.format("cpu", 2))  # (one module name: it is hashed too)
    on_gpu = _load(folders[1], "notebook", source.format("cuda", 2))
    rescaled = _load(folders[2], "notebook", source.format("cpu", 3))
    assert fingerprint(on_cpu) == fingerprint(on_gpu)
    assert fingerprint(on_cpu) != fingerprint(rescaled)  # a global it does read
