"""Copy the report's charting library from npm into the package: `make assets`.

`npm ci` installs exactly what web/package-lock.json pins (its sha512 checked), then uPlot's
minified build, its CSS and its licence land in loadkit/report/_assets/, where the HTML report and
`loadkit serve`'s /ui inline them: an installed loadkit needs neither npm nor a network.
Run it after changing the version in web/package.json (`npm install --prefix web` first).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
ASSETS = ROOT / "loadkit" / "report" / "_assets"
FILES = {"dist/uPlot.iife.min.js": "uPlot.iife.min.js", "dist/uPlot.min.css": "uPlot.min.css",
         "LICENSE": "uPlot.LICENSE"}


def main() -> int:
    npm = shutil.which("npm")
    if npm is None:
        sys.stderr.write("npm not found: install nodejs (apt-get install nodejs npm)\n")
        return 2
    subprocess.run([npm, "ci", "--prefix", str(WEB), "--ignore-scripts", "--no-audit", "--no-fund"], check=True)
    package = WEB / "node_modules" / "uplot"
    ASSETS.mkdir(parents=True, exist_ok=True)
    for source, target in FILES.items():
        shutil.copyfile(package / source, ASSETS / target)
        sys.stdout.write(f"{ASSETS.relative_to(ROOT) / target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
