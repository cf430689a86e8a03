#!/bin/sh
# Builds Baton's container image from Debian's packages, without any base image:
#
#   1. the wheels: Baton's (built from this checkout) and its `server` extra's dependencies,
#      for the image's CPython (bookworm's 3.11) and architecture, downloaded by the build
#      host's pip (so its index configuration applies), plus pip's own wheel;
#   2. the root file system: `mmdebstrap` installs a minimal Debian bookworm (the Essential
#      packages and python3) from the Debian archive, then customize-rootfs.sh installs the
#      wheels into the virtualenv /opt/baton and adds the user `baton` (uid 10001);
#   3. the image: `buildah` makes it from scratch out of that root file system, with the user,
#      the entry point, the environment, the volume, the port and the health check.
#
# Usage: deploy/container/build.sh   (as root: mmdebstrap's root mode; `make image` runs it)
# Environment (all optional):
#   IMAGE         image name (default localhost/baton); tagged VERSION and latest
#   SUITE         Debian suite (default bookworm)
#   PYTHON_VERSION  the suite's python3, which the wheels are for (default 3.11: bookworm's)
#   MIRROR        Debian mirror (default http://deb.debian.org/debian)
#   PYTHON        build host's Python with pip, to build and download the wheels (python3)
#   BUILDAH       the buildah command, with global options, e.g. "buildah --storage-driver vfs"
#   KEEP_WORK=1   keep the work directory (the wheels and rootfs.tar) and print its path
# Needs: mmdebstrap, buildah (Debian packages of those names), the host's Python with pip.
# docs/container.md says how to run and configure the image.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
IMAGE=${IMAGE:-localhost/baton}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
BUILDAH=${BUILDAH:-buildah}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}

for tool in mmdebstrap "${BUILDAH%% *}"; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is not installed" >&2; exit 1; }
done
"$PYTHON" -m pip --version >/dev/null 2>&1 || {
    echo "build.sh: $PYTHON has no pip: set PYTHON to a Python 3 with pip" >&2
    exit 1
}
case $(uname -m) in
    x86_64) arch=x86_64 ;;
    aarch64) arch=aarch64 ;;
    *) echo "build.sh: no manylinux wheels for $(uname -m)" >&2; exit 1 ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/baton-image.XXXXXX")
if [ -z "${KEEP_WORK:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
say() { printf '%s build.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# -- 1. the wheels -----------------------------------------------------------------------------
say "building Baton's wheel and downloading its dependencies' for CPython $PYTHON_VERSION"
mkdir "$WORK/wheels"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheels" "$ROOT"
wheel=$(ls "$WORK"/wheels/baton_oauth-*.whl)
version=$(basename "$wheel" | cut -d- -f2)
# Binary wheels only (the image has no compiler), for the image's interpreter and every
# glibc up to bookworm's 2.36 (a wheel names the oldest glibc it runs on).
platforms=""
for minor in $(seq 36 -1 17); do
    platforms="$platforms --platform manylinux_2_${minor}_$arch"
done
# shellcheck disable=SC2086 # $platforms is a list of options
"$PYTHON" -m pip download --quiet --dest "$WORK/wheels" --only-binary=:all: \
    --implementation cp --python-version "$PYTHON_VERSION" \
    --abi "cp$(echo "$PYTHON_VERSION" | tr -d .)" --abi abi3 --abi none \
    $platforms --platform "manylinux2014_$arch" --platform any \
    "${wheel}[server]" pip
cp "$HERE/healthcheck.py" "$WORK/wheels/"

# -- 2. the root file system -------------------------------------------------------------------
# The Essential packages, python3 and libstdc++6 (greenlet's C++ runtime: manylinux wheels
# bundle every library but glibc's, libgcc_s and libstdc++), nothing recommended; usr-is-merged rather than usrmerge
# (which pulls in perl). No documentation, manual pages or translations (the copyright files
# stay); no apt (nothing installs packages at run time); no package lists left behind (the
# customize hook removes them, lock and all: mmdebstrap's own clean-up would leave those).
say "installing Debian $SUITE from $MIRROR"
# shellcheck disable=SC2016 # "$1" is for mmdebstrap to expand: the new root
mmdebstrap --variant=essential --include=python3,libstdc++6 \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --skip=cleanup/apt/lists \
    --customize-hook='mkdir -p "$1/tmp/wheels"' \
    --customize-hook="copy-in $WORK/wheels /tmp" \
    --customize-hook="$HERE/customize-rootfs.sh" \
    --quiet \
    "$SUITE" "$WORK/rootfs.tar" "$MIRROR"

# -- 3. the image ------------------------------------------------------------------------------
# Docker's image format: OCI's has no HEALTHCHECK (podman and Docker both run both formats).
export BUILDAH_FORMAT=docker
say "making the image $IMAGE:$version"
container=$($BUILDAH from scratch)
trap '$BUILDAH rm "$container" >/dev/null 2>&1 || true; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
$BUILDAH add --quiet "$container" "$WORK/rootfs.tar" /
# `baton serve` by default; `podman run IMAGE db upgrade` (or any other `baton` command) runs
# that command instead. Options come from BATON_* variables (`baton serve --help`); the
# defaults here listen on every address of the container, so BATON_ISSUER is required.
$BUILDAH config \
    --user 10001:10001 \
    --workingdir /var/lib/baton \
    --entrypoint '["/opt/baton/bin/baton"]' \
    --cmd '["serve"]' \
    --env PATH=/opt/baton/bin:/usr/local/bin:/usr/bin:/bin \
    --env LANG=C.UTF-8 \
    --env PYTHONUNBUFFERED=1 \
    --env PYTHONDONTWRITEBYTECODE=1 \
    --env BATON_HOST=0.0.0.0 \
    --env BATON_PORT=8000 \
    --env BATON_DB=sqlite:////var/lib/baton/baton.db \
    --volume /var/lib/baton \
    --port 8000/tcp \
    --stop-signal SIGTERM \
    --healthcheck 'CMD /usr/local/bin/baton-healthcheck' \
    --healthcheck-interval 30s \
    --healthcheck-timeout 5s \
    --healthcheck-start-period 10s \
    --healthcheck-retries 3 \
    --label org.opencontainers.image.title=baton \
    --label "org.opencontainers.image.description=Baton OAuth 2.0 / OpenID Connect authorization server" \
    --label "org.opencontainers.image.version=$version" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.base.name=debian:$SUITE (mmdebstrap, no base image)" \
    "$container"
$BUILDAH commit --quiet --format docker --rm "$container" "$IMAGE:$version" >/dev/null
$BUILDAH tag "$IMAGE:$version" "$IMAGE:latest"
if [ -n "${KEEP_WORK:-}" ]; then say "work directory kept: $WORK"; fi
say "built $IMAGE:$version ($IMAGE:latest)"
$BUILDAH images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE:$version" >&2
echo "$IMAGE:$version"
