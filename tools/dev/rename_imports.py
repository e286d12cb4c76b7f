"""Rewrite imports of the top-level packages engine, tools and app to deeppose.engine,
deeppose.tools and deeppose.app (issue 13: no generic top-level names in site-packages).

Idempotent and mechanical, so that a branch started before the rename can be merged by
running it on the branch first:

    python tools/dev/rename_imports.py            # rewrites the repository's .py files in place
    python tools/dev/rename_imports.py --check    # exit 1 and list files that still need it

Rules (Python files under app/, engine/, tools/, tests/, deeppose/ and main.py):
1. ``from engine...`` / ``from tools...`` / ``from app...`` -> ``from deeppose.engine...`` etc.
2. ``import engine.x as y`` -> ``import deeppose.engine.x as y``; a bare ``import engine.x``
   becomes ``import deeppose.engine.x`` plus ``from deeppose import engine`` (so that uses of
   ``engine.x`` keep working).
3. A string literal that is a dotted path to a module of these packages (``"tools.eval.evaluate"``,
   as in the command table or ``sys.modules[...]``) gets the prefix; other strings
   (``"app.png"``) are left alone.
Relative imports (``from .model import``) need nothing; docstrings and comments are left as
they are (``engine.x`` there names the repository folder), which keeps the diff to imports.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "tools", "app")
FOLDERS = ("app", "engine", "tools", "tests", "deeppose")
_P = "|".join(PACKAGES)

FROM = re.compile(rf"^([ \t]*)from ({_P})(?=[.\s])", re.M)
IMPORT = re.compile(rf"^([ \t]*)import ({_P})((?:\.\w+)*)([ \t]+as[ \t]+\w+)?[ \t]*$", re.M)
STRING = re.compile(rf"""(["'])((?:{_P})(?:\.\w+)+)\1""")


def _is_module_path(dotted: str, root: Path) -> bool:
    """Whether ``a.b[.c...]`` names a module or package of the repository (checked on disk)."""
    parts = dotted.split(".")
    for n in range(len(parts), 1, -1):
        base = root.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def rewrite(text: str, root: Path = ROOT) -> str:
    """The text of one Python file with the rules of the module docstring applied."""
    text = FROM.sub(r"\1from deeppose.\2", text)

    def _import(m: re.Match) -> str:
        indent, pkg, rest, alias = m.group(1), m.group(2), m.group(3), m.group(4)
        if alias:
            return f"{indent}import deeppose.{pkg}{rest}{alias}"
        line = f"{indent}import deeppose.{pkg}{rest}"
        return f"{line}\n{indent}from deeppose import {pkg}" if rest else f"{indent}from deeppose import {pkg}"
    text = IMPORT.sub(_import, text)
    text = STRING.sub(lambda m: f"{m.group(1)}deeppose.{m.group(2)}{m.group(1)}"
                      if _is_module_path(m.group(2), root) else m.group(0), text)
    return text


def files(root: Path = ROOT) -> list[Path]:
    """The Python files the rename applies to."""
    out = [root / "main.py"] if (root / "main.py").is_file() else []
    for folder in FOLDERS:
        out += sorted(p for p in (root / folder).rglob("*.py") if "dev" not in p.relative_to(root).parts)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the files that would change; exit 1 if any")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    changed = []
    for path in files(args.root):
        old = path.read_text()
        new = rewrite(old, args.root)
        if new != old:
            changed.append(path)
            if not args.check:
                path.write_text(new)
    for path in changed:
        print(("needs rewriting: " if args.check else "rewrote ") + str(path.relative_to(args.root)))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
