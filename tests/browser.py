"""Headless Chromium (Debian package chromium), as an administrator's browser, and where its screenshots go.

Screenshots are written to $VWS_TEST_OUTPUT, else test-output/ in the repository; each
path is printed in pytest's summary (see conftest.py).
"""

import os
import subprocess
from pathlib import Path

# The browser itself, not the package's /usr/bin/chromium wrapper script: that only adds a
# --help text, a debugger switch and flag files, none of which a headless run wants.
CHROMIUM = "/usr/lib/chromium/chromium"
OUTPUT = Path(os.environ.get("VWS_TEST_OUTPUT") or Path(__file__).resolve().parents[1] / "test-output")
WRITTEN: list[Path] = []  # screenshots written in this session


class Browser:
    """One profile; each call is one headless Chromium run on a URL."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def dom(self, url: str) -> str:
        """The page as Chromium rendered it (its DOM, serialized)."""
        return self._run("--dump-dom", url)

    def screenshot(self, url: str, name: str, size: str = "1280,900") -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / name
        path.unlink(missing_ok=True)
        self._run(f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars", url)
        assert path.stat().st_size > 0, f"chromium wrote no screenshot to {path}"
        WRITTEN.append(path)
        print(f"screenshot: {path}")
        return path

    def _run(self, *arguments: str) -> str:
        # --no-sandbox: the suite runs as root, where Chromium's sandbox refuses to start.
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={self.profile}"]
        done = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
