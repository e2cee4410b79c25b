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


def _sources(*folders: str):
  for folder in folders:
    yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_runner_names_no_algorithm():
  """train/ works for any agent: what is algorithm-specific (flags, b) comes from the agent."""
  ids = "|".join(re.escape(name) for name in agents.list_agents())
  for path in _sources("jaxsafe/train"):
    found = re.findall(rf"(?<![\w-])({ids})(?![\w-])", path.read_text(), flags=re.IGNORECASE)
    assert not found, (path.relative_to(ROOT), sorted(set(found)))


def test_tests_and_benchmarks_do_not_import_each_other():
  for path in _sources("tests"):
    assert "benchmarks" not in re.findall(r"sys\.path\.\w+\(.*?(benchmarks)", path.read_text())
  test_modules = {p.stem for p in _sources("tests")} - {"__init__"}
  for path in _sources("benchmarks"):
    text = path.read_text()
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", text, flags=re.MULTILINE))
    assert not imported & test_modules, (path.relative_to(ROOT), imported & test_modules)
    assert not re.search(r"sys\.path\.\w+\(.*tests", text), path.relative_to(ROOT)


def test_no_source_cites_a_path_outside_the_repository():
  """The design documents and papers beside the repository are cited by title, not by path."""
  outside = "shared" + "/"  # spelt so that this file does not contain it
  for path in _sources("jaxsafe", "envs", "tests", "benchmarks"):
    assert outside not in path.read_text(), path.relative_to(ROOT)
