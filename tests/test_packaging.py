"""The desktop files validate with the freedesktop tools, and every copy of the version
agrees with `freezestudio.__version__` (the one place it is written).

`desktop-file-validate` (Debian: desktop-file-utils) and `appstreamcli` (Debian: appstream)
are installed by `.ci/run` where it can; elsewhere these tests skip, saying which is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import freezestudio
from freezestudio.resources import APP_ID, DESKTOP_DIR, ICON_SIZES, ICON_SVG, icon_png

REPO = Path(__file__).resolve().parents[1]
DESKTOP_ENTRY = DESKTOP_DIR / f"{APP_ID}.desktop"
METAINFO = DESKTOP_DIR / f"{APP_ID}.metainfo.xml"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; .ci/run installs it)")
    return path


def validate_desktop_entry(path: Path) -> None:
    """desktop-file-validate reports nothing at all: no error, warning or hint."""
    done = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_the_desktop_entry_validates():
    validate_desktop_entry(DESKTOP_ENTRY)


def test_the_appstream_metainfo_validates():
    done = subprocess.run([tool("appstreamcli", "appstream"), "validate", "--no-net",
                           "--explain", str(METAINFO)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    issues = [line for line in done.stdout.splitlines() if re.match(r"^[EWI]: ", line)]
    assert issues == [], done.stdout


def test_the_metainfo_names_the_entry_the_binary_and_the_keras_type():
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == DESKTOP_ENTRY.name
    assert root.findtext("provides/binary") == "freezestudio"
    mime = ET.parse(DESKTOP_DIR / "freezestudio-mime.xml").getroot()
    (keras_type,) = mime
    assert root.findtext("provides/mediatype") == keras_type.get("type") == "application/x-keras"
    entry = dict(line.split("=", 1) for line in DESKTOP_ENTRY.read_text().splitlines()
                 if "=" in line)
    assert "application/x-keras" in entry["MimeType"].split(";")
    assert entry["Icon"] == APP_ID


def _changelog_releases() -> list[tuple[str, str]]:
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$",
                      (REPO / "CHANGELOG.md").read_text(), re.M)


def test_the_version_is_written_once_and_every_copy_agrees():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "freezestudio.__version__"}
    releases = ET.parse(METAINFO).getroot().findall("releases/release")
    newest = releases[0]
    assert (newest.get("version"), newest.get("date")) == _changelog_releases()[0]
    assert newest.get("version") == freezestudio.__version__
    assert [r.get("version") for r in releases] == [v for v, _ in _changelog_releases()]


def test_the_icon_pngs_are_the_shipped_sizes():
    from PySide6.QtGui import QImage

    assert ICON_SVG.read_text().startswith("<svg")
    for size in ICON_SIZES:
        image = QImage(str(icon_png(size)))
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel()
