#!/usr/bin/env bash
# Build inputs for a Docker engine that cannot pull from Docker Hub or reach
# download.pytorch.org (docs/how-to/deploy.md, "Building without Docker Hub"):
#   1. a Debian base image with python3 and venv, from debootstrap (installed with apt-get
#      where missing; needs root and a Debian mirror), imported as $1 (default
#      fedpriv-base:bookworm) unless it exists;
#   2. the CPU build of torch from this machine's pip, into docker/wheels/;
#   3. this machine's extra certificate authorities, into docker/ca/ (a TLS proxy's CA).
# Then: FEDPRIV_BASE_IMAGE=<tag> docker compose build
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-fedpriv-base:bookworm}
python=${PYTHON:-python3}
if ! docker image inspect "$tag" >/dev/null 2>&1; then
    if ! command -v debootstrap >/dev/null; then
        apt-get install -y --no-install-recommends debootstrap >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
    fi
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$root" -c . | docker import - "$tag" >/dev/null
fi
if ! ls docker/wheels/torch-*.whl >/dev/null 2>&1; then
    "$python" -m pip download -q --no-deps torch==2.13.0 -d docker/wheels
fi
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt docker/ca/
fi
echo "base image $tag; build with: FEDPRIV_BASE_IMAGE=$tag docker compose build"
