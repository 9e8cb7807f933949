"""Issue 23: what the package declares and ships agrees with itself, and the docs quote the code's defaults."""

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from setuptools._distutils.filelist import FileList

from qsopipe.pipeline.config import defaults

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: Header card quoted in the docs -> the setting (pipeline/config.yaml) it records.
CARDS = {"C_TH": "c_th", "N_TH": "n_th", "C_TH1": "c_th_single", "BAL_TH": "bal_th", "BALP_TH": "bal_prob_th",
         "MGII_TH": "mgii_threshold"}
#: Command-line option -> the card it sets.
OPTION_CARDS = {"c-th": "C_TH", "n-th": "N_TH", "c-th-single": "C_TH1", "bal-th": "BAL_TH", "bal-prob-th": "BALP_TH",
                "mgii-threshold": "MGII_TH"}


def floors(requirements):
    """{name: the version after '>='} of requirement strings (pip's or conda's)."""
    found = {}
    for text in requirements:
        requirement = Requirement(text)
        found[requirement.name] = next((s.version for s in requirement.specifier if s.operator == ">="), None)
    return found


def installed(extras, machine):
    """Names of the requirements pip installs for qsopipe[extras] on a `machine` (platform_machine)."""
    names = set()
    for text in PYPROJECT["dependencies"] + [r for extra in extras for r in PYPROJECT["optional-dependencies"][extra]]:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"platform_machine": machine, "extra": ""}):
            names.add(requirement.name)
    return names


def test_environment_yml_has_pyprojects_version_floors():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = floors(spec for spec in environment["dependencies"] if isinstance(spec, str)
                   and not spec.startswith(("python", "pip")))
    pip = floors(PYPROJECT["dependencies"])
    assert conda and all(conda[name] == pip[name] for name in conda), (conda, pip)
    assert set(pip) - set(conda) <= {"keras"}  # keras has no conda-forge build matching TensorFlow's pip wheels


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_one_tensorflow_per_install(machine):
    assert not installed([], machine) & {"tensorflow", "tensorflow-cpu"}
    for extras in (["cpu"], ["gpu"], ["gpu", "test"]):
        assert len(installed(extras, machine) & {"tensorflow", "tensorflow-cpu"}) == 1, extras
    assert "tensorflow-cpu" not in installed(["gpu"], machine)


def sdist_files():
    """The files setuptools puts in the sdist by MANIFEST.in, relative to the repository."""
    manifest = FileList()
    manifest.allfiles = []
    for parent, folders, names in os.walk(REPO):
        folders[:] = [name for name in folders if not name.startswith(".") and name != "__pycache__"]
        manifest.allfiles += [os.path.relpath(os.path.join(parent, name), REPO) for name in names]
    for line in (REPO / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            manifest.process_template_line(line)
    return manifest.files


def test_sdist_carries_licence_tests_docs_slurm_and_environment():
    files = sdist_files()
    for wanted in ("LICENSE", "environment.yml", "tests/conftest.py", "docs/catalog.md", "slurm/run.sbatch"):
        assert wanted in files, wanted
    assert "BSD 3-Clause" in (REPO / "LICENSE").read_text() and PYPROJECT["license"] == "BSD-3-Clause"
    assert PYPROJECT["license-files"] == ["LICENSE"]


def test_defaults_quoted_in_docs_and_readme_are_config_yamls():
    shipped = defaults()
    catalog_doc = (REPO / "docs" / "catalog.md").read_text()
    quoted = re.findall(r"default (C_TH1|C_TH|N_TH|BAL_TH|BALP_TH|MGII_TH) = ([\d.]+)", catalog_doc)
    assert {card for card, _ in quoted} == set(CARDS)
    assert not re.search(r"default:? \d", catalog_doc), "quote a default as 'default CARD = VALUE'"
    readme = (REPO / "README.md").read_text()
    options = re.findall(r"--(c-th-single|c-th|n-th|bal-th|bal-prob-th|mgii-threshold) ([\d.]+)\]?\s", readme)
    quoted += [(OPTION_CARDS[option], value) for option, value in options]
    for card, value in quoted:
        assert float(value) == shipped[CARDS[card]], (card, value)


def test_readme_troubleshooting_lists_every_exit_status():
    from qsopipe.pipeline import exit_status

    section = (REPO / "README.md").read_text().split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    for status in (exit_status.OK, exit_status.FAILED, exit_status.USAGE, exit_status.DISK_FULL):
        assert f"\n| {status} | " in section, status
