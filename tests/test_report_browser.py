"""report.html renders in a real browser: headless Chromium takes a screenshot of it offline.

Needs Debian's `chromium` package (`apt-get install chromium`); skipped without it.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from PIL import Image
from test_release_tools import make_release

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not installed (Debian package `chromium`)")


def screenshot(page: str, png, profile) -> None:
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    f"--screenshot={png}", "--window-size=1200,6000", page],
                   check=True, timeout=120, capture_output=True)


def test_report_renders_plots_and_thumbnails_in_headless_chromium(tmp_path):
    release = make_release(tmp_path / "build", clip=False)
    png = tmp_path / "report.png"
    screenshot((release / "report.html").as_uri(), png, tmp_path / "profile")
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 6000) and png.stat().st_size > 20_000
    pixels = np.asarray(image)
    assert pixels.std() > 20  # not a blank page
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::5]}
    assert len(colours) > 1000  # the decoded keyframe thumbnails, not only text and flat bars
