"""Package discovery for setuptools (everything else is in pyproject.toml).

The top-level folders install as subpackages of the `qsopipe` namespace, so
that a module's dotted name mirrors its path: pipeline/run.py is
`qsopipe.pipeline.run`, stages/mgii.py is `qsopipe.stages.mgii`. Every
folder below them is found, data-only folders (models/weights) included.
"""

from setuptools import find_namespace_packages, setup

FOLDERS = ("pipeline", "stages", "models")

setup(
    package_dir={f"qsopipe.{folder}": folder for folder in FOLDERS},
    packages=[f"qsopipe.{name}" for name in find_namespace_packages(
        include=[pattern for folder in FOLDERS for pattern in (folder, f"{folder}.*")],
        exclude=["*.__pycache__"])],
)
