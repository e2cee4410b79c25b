"""docs/architecture.md stays true to the code: its layout names every module of the package and
every algorithm that ``jaxsafe list`` shows, and no algorithm that it does not."""

from __future__ import annotations

import pathlib
import re

from jaxsafe import agents

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _layout() -> str:
  return DOC.split("## Layout", 1)[1].split("```", 2)[1]


def test_the_layout_names_every_module():
  layout = _layout()
  for folder in ("jaxsafe", "envs"):
    for path in sorted((ROOT / folder).rglob("*.py")):
      if path.name == "__init__.py" and path.parent.name != "agents":
        continue
      assert re.search(rf"(^|[\s`]){re.escape(path.name)}[\s`:]", layout), path.relative_to(ROOT)
    for package in sorted(p for p in (ROOT / folder).rglob("*") if p.is_dir()
                          and (p / "__init__.py").exists() and p != ROOT / folder):
      assert f"{package.name}/" in layout, package.relative_to(ROOT)


def test_the_algorithm_ids_are_those_of_jaxsafe_list():
  line = DOC.split("- Algorithm ids (`jaxsafe list`):", 1)[1].split("\n- ", 1)[0]
  named = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*(?=[,;. ]|\s|$)", re.sub(r"\(.*?\)", "", line)))
  assert named == set(agents.list_agents())
