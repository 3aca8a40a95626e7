"""`make test-latest`: the unit and integration tests on the newest release of every dependency.

    python -m tests.latest VENV [-- PYTEST_ARGS]

VENV holds the project with every group installed without the lock (the Makefile makes it). Prints which
packages are newer than uv.lock's pins, runs the tests in VENV, and ends with what broke: each failed test
with the first line of its error, grouped by error. Exits with pytest's status. Not part of `make test`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ("tests/unit", "tests/integration")


def locked_versions() -> dict[str, set[str]]:
    """Package -> the versions uv.lock pins (a package may have one per Python version range)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    pins: dict[str, set[str]] = defaultdict(set)
    for package in lock.get("package", []):
        if "version" in package:
            pins[package["name"].lower()].add(package["version"])
    return pins


def installed_versions(venv: Path) -> dict[str, str]:
    uv = Path(sys.executable).parent / "uv"
    listing = subprocess.run([str(uv), "pip", "list", "--format", "json", "--python", str(venv / "bin" / "python")],
                             capture_output=True, text=True, check=True)
    return {entry["name"].lower(): entry["version"] for entry in json.loads(listing.stdout)}


def moved(pins: dict[str, set[str]], installed: dict[str, str]) -> list[str]:
    lines = []
    for name, version in sorted(installed.items()):
        if name in pins and version not in pins[name]:
            lines.append(f"  {name}: {' / '.join(sorted(pins[name]))} (locked) -> {version}")
        elif name not in pins and name not in ("likeness", "pip", "uv"):
            lines.append(f"  {name}: not in the lock -> {version} (a new dependency of a dependency)")
    return lines


def broken(output: str) -> dict[str, list[str]]:
    """Error's first line -> the tests that failed with it, from pytest's short summary (-rfE)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for line in output.splitlines():
        match = re.match(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", line)
        if match:
            groups[(match.group(3) or "(no message)")[:200]].append(match.group(2))
    return groups


def main(argv: list[str]) -> int:
    venv = Path(argv[0])
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    changes = moved(locked_versions(), installed_versions(venv))
    print(f"== newer than uv.lock ({len(changes)} packages)")
    print("\n".join(changes) or "  nothing: the lock already has the newest releases")
    print(f"== {' '.join(SUITES)} on them", flush=True)
    command = [str(venv / "bin" / "python"), "-m", "pytest", *SUITES, "-q", "-rfE", "-p", "no:cacheprovider", *extra]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    sys.stdout.write(result.stdout[-20_000:])
    sys.stderr.write(result.stderr[-5_000:])
    groups = broken(result.stdout)
    print("== what broke")
    if not groups:
        print("  nothing" if result.returncode == 0 else f"  pytest exited {result.returncode}; see above")
    for error, tests in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"  {len(tests)} x {error}")
        for test in tests[:5]:
            print(f"      {test}")
        if len(tests) > 5:
            print(f"      ... and {len(tests) - 5} more")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
