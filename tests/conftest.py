"""Shared test fixtures: real data under ../shared/datasets when present, small CPU threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(
    os.environ.get("GMMPVAE_SHARED_DATASETS", REPO.parent / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data files of ../shared/datasets; tests that need them skip when absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test process: on 2 shared cores, multi-threaded OpenMP stalls on
    the small tensors of tests (a PixelCNN sample: 15 s with 2 threads, 0.6 s with 1)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def test_device():
    """The device of device-parametrised tests: CUDA when present (the GPU suite,
    benchmarks/device_suite.sh), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Browser:
    """Debian's headless Chromium, driven by its command line (no WebDriver): the DOM after
    load, the images of a page as loaded, a screenshot."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions")

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _run(self, *args: str, timeout: float = 90) -> str:
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory(prefix="gmmpvae-chromium-") as profile:
            done = subprocess.run([self.binary, *self.FLAGS, f"--user-data-dir={profile}",
                                   *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def dom(self, url: str, budget_ms: int = 10000) -> str:
        """The page's DOM once loaded (scripts run for up to ``budget_ms`` of virtual time)."""
        return self._run("--allow-file-access-from-files", f"--virtual-time-budget={budget_ms}",
                         "--dump-dom", url)

    def images(self, page: Path, tmp: Path) -> list[tuple[str, int]]:
        """(src, naturalWidth) of every <img> of a local page once each has loaded or
        failed (0: it did not load): a harness page frames it and reads its images."""
        import html
        import json
        import re

        harness = tmp / "harness.html"
        harness.write_text(f"""<html><body>
<iframe id="f" src="{page.resolve().as_uri()}" style="width:1200px;height:900px"></iframe>
<script>
const f = document.getElementById("f");
f.addEventListener("load", () => {{
  const imgs = Array.from(f.contentDocument.images);
  Promise.all(imgs.map(i => i.complete ? null :
                       new Promise(r => {{ i.onload = r; i.onerror = r; }})))
    .then(() => {{ const out = document.createElement("pre"); out.id = "result";
      out.textContent = JSON.stringify(imgs.map(i => [i.getAttribute("src"), i.naturalWidth]));
      document.body.appendChild(out); }});
}});
</script></body></html>""", encoding="utf-8")
        found = re.search(r'<pre id="result">(.*?)</pre>', self.dom(harness.as_uri()), re.S)
        assert found, "the harness page did not report the images (did the page load?)"
        return [tuple(x) for x in json.loads(html.unescape(found.group(1)))]

    def screenshot(self, url: str, path: Path, size: str = "1200,900",
                   budget_ms: int = 10000) -> Path:
        self._run(f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                  f"--screenshot={path}", url)
        assert path.is_file(), f"no screenshot written to {path}"
        return path

    @staticmethod
    def colours(png: Path) -> int:
        """How many colours a screenshot holds (1: blank)."""
        from PIL import Image

        with Image.open(png) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
        return len(colours or [])


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium (``$GMMPVAE_CHROMIUM``, else ``chromium`` on PATH; .ci/run installs
    Debian's where absent); skips with the reason where there is none."""
    import shutil

    binary = os.environ.get("GMMPVAE_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not binary:
        pytest.skip("no headless Chromium here (apt-get install -y chromium; .ci/run does)")
    return Browser(binary)
