"""The project's own files agree with each other: pins, conda environment, README, CI."""
import re
import tomllib

import yaml

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                   if "==" in line and not line.startswith("#"))


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_direct_dependency_is_pinned_exactly_and_locked_the_same():
    project = PYPROJECT["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    locked = {norm(k): v for k, v in CONSTRAINTS.items()}
    for dep in deps:
        name, _, version = dep.partition("==")
        assert version, f"{dep} is not pinned with =="
        assert locked.get(norm(name)) == version, f"{dep}: constraints.txt has {locked.get(norm(name))}"


def test_conda_environment_installs_the_same_package_the_same_way():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11" and ">=3.11,<3.12" == PYPROJECT["project"]["requires-python"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-c constraints.txt", "-e .[dev]"]
    make = (ROOT / "Makefile").read_text()
    assert '-c constraints.txt -e ".[dev]"' in make  # make setup installs exactly what conda's pip section does


def test_readme_shows_the_two_commands_and_every_notebook():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert nb.stem in readme, f"README's course map misses {nb.stem}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
