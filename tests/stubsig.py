"""Fakes of MicroPython's port modules (machine, network, esp, esp32, rp2) that accept exactly
what the real port accepts: every call is checked against the signatures in the ports' PyPI
stubs (micropython-esp32-stubs, micropython-rp2-rpi-pico-w-stubs, installed by scripts/setup.sh
into .venv/stubs/<port>/), before the fake's own behaviour runs.

    machine = strict_module(fake_machine, "esp32", "machine")

A fake attribute the stub does not have, or a call the stub's signatures (any overload) do not
bind, raises StubMismatch (a TypeError): a wrong keyword to machine.UART fails the test as it
would fail on the device. The fake's own parameters do not matter (they may take **kw).
"""

from __future__ import annotations

import ast
import functools
import inspect
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / ".venv" / "stubs"
_EMPTY = inspect.Parameter.empty


class StubMismatch(TypeError):
    pass


def stub_dir(port: str) -> Path:
    d = STUBS / port
    if not (d / "machine.pyi").exists():
        raise RuntimeError(f"MicroPython stubs for {port} missing in {d}: run `make setup`")
    return d


@functools.lru_cache(maxsize=None)
def _module_ast(port: str, module: str) -> ast.Module:
    d = stub_dir(port)
    for cand in (d / f"{module}.pyi", d / module / "__init__.pyi"):
        if cand.exists():
            return ast.parse(cand.read_text())
    raise StubMismatch(f"no stub for module {module!r} on {port}")


def _signature(fn: ast.FunctionDef, drop_self: bool) -> inspect.Signature:
    a = fn.args
    params = []
    pos = list(a.posonlyargs) + list(a.args)
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    for i, (arg, d) in enumerate(zip(pos, defaults)):
        if drop_self and i == 0:
            continue
        kind = (inspect.Parameter.POSITIONAL_ONLY if i < len(a.posonlyargs)
                else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params.append(inspect.Parameter(arg.arg, kind, default=_EMPTY if d is None else ...))
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY,
                                        default=_EMPTY if d is None else ...))
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _defs(body, name):
    return [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name == name]


def _class(body, name):
    for n in body:
        if isinstance(n, ast.ClassDef) and n.name == name:
            return n
    return None


def _names(body):
    out = set()
    for n in body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            out.add(n.target.id)
        elif isinstance(n, ast.Assign):
            out.update(t.id for t in n.targets if isinstance(t, ast.Name))
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out


def signatures(port: str, module: str, qualname: str) -> list[inspect.Signature]:
    """The stub's signatures (overloads) of module.qualname: a function, a method
    ("UART.init") or a class (its __init__, without self)."""
    body = _module_ast(port, module).body
    parts = qualname.split(".")
    cls = None
    for p in parts[:-1]:
        cls = _class(body if cls is None else cls.body, p)
        if cls is None:
            raise StubMismatch(f"{module}.{qualname}: no class {p!r} in the {port} stub")
    scope = body if cls is None else cls.body
    last = parts[-1]
    c = _class(scope, last)
    if c is not None:
        defs = _defs(c.body, "__init__")
        return [_signature(f, True) for f in defs] or [inspect.Signature()]
    defs = _defs(scope, last)
    if not defs:
        raise StubMismatch(f"{module}.{qualname} is not in the {port} stub")
    return [_signature(f, cls is not None) for f in defs]


def has_attr(port: str, module: str, qualname: str) -> bool:
    body = _module_ast(port, module).body
    parts = qualname.split(".")
    scope = body
    for p in parts[:-1]:
        c = _class(scope, p)
        if c is None:
            return False
        scope = c.body
    return parts[-1] in _names(scope)


def check_call(port, module, qualname, args, kwargs):
    errs = []
    for sig in signatures(port, module, qualname):
        try:
            sig.bind(*args, **kwargs)
            return
        except TypeError as e:
            errs.append(f"{sig}: {e}")
    raise StubMismatch(f"{module}.{qualname}{_fmt(args, kwargs)} does not match the {port} "
                       f"stub: " + "; ".join(errs))


def _fmt(args, kwargs):
    return "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"


def strict_function(fn, port, module, qualname):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        check_call(port, module, qualname, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper


def strict_class(cls, port, module, name):
    """A subclass of fake class `cls` whose constructor and public methods are checked against
    the stub's class `name`; public attributes the stub lacks are refused at creation."""
    for attr in vars(cls):
        if not attr.startswith("_") and not has_attr(port, module, f"{name}.{attr}"):
            raise StubMismatch(f"fake {module}.{name}.{attr} is not in the {port} stub")
    ns = {}
    for attr, v in vars(cls).items():
        if attr.startswith("_") or not callable(v) or isinstance(v, (staticmethod, classmethod)):
            continue
        def make(meth, attr=attr):
            @functools.wraps(meth)
            def m(self, *args, **kwargs):
                check_call(port, module, f"{name}.{attr}", args, kwargs)
                return meth(self, *args, **kwargs)
            return m
        ns[attr] = make(v)
    orig_init = cls.__init__

    def __init__(self, *args, **kwargs):
        check_call(port, module, name, args, kwargs)
        orig_init(self, *args, **kwargs)
    ns["__init__"] = __init__
    return type(cls.__name__, (cls,), ns)


def strict_module(fake, port, module):
    """A copy of fake module `fake` in which every public function and class is strict; a public
    name the stub lacks raises StubMismatch here."""
    m = types.ModuleType(fake.__name__)
    for attr, v in vars(fake).items():
        if attr.startswith("_"):
            continue
        if not has_attr(port, module, attr):
            raise StubMismatch(f"fake {module}.{attr} is not in the {port} stub")
        if isinstance(v, type):
            v = strict_class(v, port, module, attr)
        elif callable(v):
            v = strict_function(v, port, module, attr)
        setattr(m, attr, v)
    return m
