"""The privilege boundary is the layout: who may import whom, read from the source (ast; nothing is
imported or run).

Rooms of ``sgewrap``:

- the shared contract: ``sgewrap`` itself, ``errors``, ``conventions``, ``locate`` and the method
  registry ``methods``: stdlib only, imported by everyone;
- the root side, ``sgewrap.rootside``: what runs as root with a job owner's environment (the
  shepherd's daemon, PAM hooks, the queue's prolog and epilog): stdlib and the contract only;
- the user side, the other top-level modules (the client wrappers, ``qrsh_ssh``): the contract,
  shellingham; never the root side, the admin side or plumbum;
- the admin side, ``sgewrap.admin``: anything.

And no import cycle, module-level or inside a function.
"""
import ast
import os
import sys

import pytest

from lib import WRAPPERS_SRC

PACKAGE = os.path.join(WRAPPERS_SRC, "sgewrap")
CONTRACT = {"sgewrap", "sgewrap.errors", "sgewrap.conventions", "sgewrap.locate", "sgewrap.methods"}
STDLIB = set(sys.stdlib_module_names)


def module_name(path):
    rel = os.path.relpath(path, WRAPPERS_SRC)[:-len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def modules():
    """{module name: path} of every module of the package."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found[module_name(path)] = path
    return found


def imports(path, name):
    """The modules ``path`` (module ``name``) imports: absolute names, a package's submodules named
    as such (``from . import procs`` -> ``sgewrap.rootside.procs``)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            found.add(stem)
            found.update(stem + "." + alias.name for alias in node.names)
    return found


def room(module):
    if module in CONTRACT or any(module.startswith(c + ".") for c in ("sgewrap.methods",)):
        return "contract"
    if module == "sgewrap.rootside" or module.startswith("sgewrap.rootside."):
        return "root"
    if module == "sgewrap.admin" or module.startswith("sgewrap.admin."):
        return "admin"
    return "user"


def graph():
    """{module: the package's modules it imports} and {module: third-party top-level names}."""
    mods = modules()
    inner, outer = {}, {}
    for name, path in mods.items():
        found = imports(path, name)
        inner[name] = {m for m in found if m in mods and m != name}
        outer[name] = {m.split(".")[0] for m in found if m.split(".")[0] != "sgewrap"} - STDLIB
    return inner, outer


def test_every_room_has_modules():
    rooms = {room(m) for m in modules()}
    assert rooms == {"contract", "root", "user", "admin"}


@pytest.mark.parametrize("side, allowed_rooms, allowed_outer", [
    ("contract", {"contract"}, set()),
    ("root", {"contract", "root"}, set()),
    ("user", {"contract", "user"}, {"shellingham"}),
])
def test_a_room_imports_only_what_it_may(side, allowed_rooms, allowed_outer):
    inner, outer = graph()
    wrong = ["%s imports %s" % (m, i) for m in sorted(inner) if room(m) == side
             for i in sorted(inner[m]) if room(i) not in allowed_rooms]
    wrong += ["%s imports %s" % (m, o) for m in sorted(outer) if room(m) == side
              for o in sorted(outer[m] - allowed_outer)]
    assert wrong == []


def test_the_admin_package_is_thin():
    """Importing a module of sgewrap.admin for its data (the installer, under a system Python without
    plumbum) loads nothing but the standard library: the command itself is sgewrap.admin.cli."""
    inner, outer = graph()
    assert outer["sgewrap.admin"] == set() and inner["sgewrap.admin"] <= {"sgewrap"}


def test_the_root_side_says_its_rules():
    doc = ast.get_docstring(ast.parse(open(os.path.join(PACKAGE, "rootside", "__init__.py")).read()))
    for rule in ("root", "standard library", "fds 1 and 2", "user"):
        assert rule in doc


def test_no_import_cycle():
    inner, _ = graph()
    # a package imports its own submodules' names through "from . import x"; its __init__ importing
    # a submodule that imports the package back is the usual shape, not a cycle of code
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in inner.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        stack.pop()

    for m in sorted(edges):
        visit(m)
    assert cycles == []


def test_entry_point_shims_import_their_own_room():
    """wrappers/NAME: two lines into the module the registry names for it."""
    from sgewrap.methods import ROOT_ENTRY_POINTS, USER_PROGRAMS
    for name, module in list(ROOT_ENTRY_POINTS.items()) + list(USER_PROGRAMS.items()):
        text = open(os.path.join(WRAPPERS_SRC, name)).read()
        assert "from %s import main" % module in text, name
        assert room(module) == ("root" if name in ROOT_ENTRY_POINTS else "user")
