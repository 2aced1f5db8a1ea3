"""The vendored front-end files are the ones their README records: the docs pages' Swagger UI and ReDoc
(api/static/) and the dashboard's htmx and uPlot (api/ui/static/vendor/). Every file in a README's table has the
sha256 the table gives, every script and style sheet in the folder is in the table, and the package data of
setup.cfg puts every one of them in the installed package (the Docker image installs kcm with pip)."""
from __future__ import annotations

import configparser
import glob
import hashlib
import re
from pathlib import Path

import pytest

from api.docs_assets import FOLDER, REDOC_ASSET, SWAGGER_UI_ASSETS

ROOT = Path(__file__).resolve().parents[3]
VENDORED = (FOLDER, ROOT / "api" / "ui" / "static" / "vendor")
ROW = re.compile(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", re.M)
SERVED = (".js", ".css")


def recorded_sums(folder: Path) -> dict[str, str]:
    """file name -> sha256, from the table of the folder's README.md."""
    sums = dict(ROW.findall((folder / "README.md").read_text()))
    assert sums, f"{folder}/README.md has no table of sha256 sums"
    return sums


@pytest.mark.parametrize("folder", VENDORED, ids=lambda folder: str(folder.relative_to(ROOT)))
def test_every_vendored_file_has_the_sha256_its_readme_records(folder):
    sums = recorded_sums(folder)
    for name, expected in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == expected, name
    served = {path.name for path in folder.iterdir() if path.name.endswith(SERVED)}
    assert served <= set(sums), sorted(served - set(sums))


def test_the_docs_pages_files_are_all_recorded():
    assert {*SWAGGER_UI_ASSETS, REDOC_ASSET} <= set(recorded_sums(FOLDER))


def package_data() -> dict[str, list[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {package: [pattern.strip() for pattern in patterns.split(",") if pattern.strip()]
            for package, patterns in config["options.package_data"].items()}


@pytest.mark.parametrize("folder", VENDORED, ids=lambda folder: str(folder.relative_to(ROOT)))
def test_setup_cfg_installs_every_vendored_file(folder):
    """setuptools globs each pattern in its package's directory; a file no pattern matches is left out of the
    wheel, and the page that names it gets a 404 in the image."""
    installed = set()
    for package, patterns in package_data().items():
        package_dir = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            installed |= {package_dir / match for match in glob.glob(pattern, root_dir=package_dir)}
    missing = sorted(str(path.relative_to(ROOT)) for path in folder.iterdir() if path not in installed)
    assert not missing, f"not in setup.cfg's [options.package_data]: {missing}"
