#!/bin/sh
# Installs what one service needs, from the lock, into a virtual environment: the shared runtime plus
# that service's group (pyproject.toml's optional dependencies), nothing else, every file hash-checked.
# The container build runs it, and so does tests/unit/test_dependencies.py, so the test imports each
# service with exactly what its image carries.
#
#   deploy/install-service.sh SERVICE VENV [PYTHON]
#   SERVICE: gateway | chat | planner | renderer | facecheck | delivery | embedded
# Needs `uv` on PATH (deploy/uv-requirements.txt) and runs from the repository root.
set -eu
service="$1"
venv="$2"
python="${3:-python3}"
requirements="$(mktemp)"
trap 'rm -f "$requirements"' EXIT
uv export --quiet --locked --no-dev --no-emit-project --no-header --extra "$service" \
    --format requirements-txt --output-file "$requirements"
uv venv --quiet --allow-existing --python "$python" "$venv"
uv pip sync --quiet --python "$venv/bin/python" --require-hashes "$requirements"
