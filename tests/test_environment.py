"""environment.yml, pyproject.toml and requirements.lock describe one environment."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_in_the_lock_and_satisfies_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _lock()
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is in pyproject.toml but not pinned in requirements.lock"
        assert dep.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {dep.name}=={pins[name]}, outside pyproject's {dep.specifier}"
        )


def test_environment_yml_installs_the_package_with_the_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python.split("=")[1] in requires.replace(">=", "").split(",")[0], (python, requires)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-c requirements.lock" in pip
    assert any(line.startswith("-e .") for line in pip)
