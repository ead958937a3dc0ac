"""`make lock`: pin every package pyproject.toml needs (runtime and dev) into requirements.lock.

pip resolves the direct dependencies as a fresh install would (`--dry-run --ignore-installed`) and
reports what it would install; nothing is installed and no extra tool is needed.

    python -m chatbot.runtime.lock [--output requirements.lock] [extra pip arguments...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = """\
# Exact versions for every machine (runtime and development). Regenerate with 'make lock'.
# torch is the CPU build: install it first (`make install` does) so nothing pulls a CUDA build.
"""


def direct_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(req for group in extras.values() for req in group)]


def resolve(requirements: list[str], pip_args: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--report", str(report_path), *pip_args, *requirements],
            check=True,
        )  # fmt: skip
        report = json.loads(report_path.read_text())
    pins: dict[str, str] = {}
    for item in report["install"]:
        metadata = item["metadata"]
        # A local label (torch's "+cpu") names a build, not a version; `==2.13.0` matches it.
        pins[metadata["name"]] = metadata["version"].split("+", 1)[0]
    return pins


def render(pins: dict[str, str]) -> str:
    lines = [
        f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda p: p[0].lower())
    ]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot.runtime.lock")
    parser.add_argument("--output", type=Path, default=ROOT / "requirements.lock")
    args, pip_args = parser.parse_known_args(argv)
    pins = resolve(direct_requirements(ROOT / "pyproject.toml"), pip_args)
    args.output.write_text(render(pins))
    print(f"wrote {len(pins)} pins to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
