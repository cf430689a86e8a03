#!/bin/sh
# mmdebstrap's customize hook (build.sh passes it): runs once every Debian package is in the
# root file system "$1", and the wheels (Baton's and its dependencies', plus pip's) were copied
# to "$1/tmp/wheels". Installs Baton into the virtualenv /opt/baton, adds the unprivileged
# user, and removes what only the build needed.
set -eu
root="$1"
uid=10001 # the image's USER (build.sh)

# Nothing of the build host's environment (its pip configuration, proxies, PYTHON* variables)
# reaches the commands run in the new root: they see only the wheels copied in.
in_root() {
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

# A virtualenv without pip: pip runs from its wheel, installs into the virtualenv and leaves
# nothing of itself there. --no-index: only the wheels build.sh downloaded and checked.
in_root python3 -m venv --without-pip /opt/baton
# shellcheck disable=SC2016 # expanded by the sh in the new root
in_root sh -c 'pip=$(ls /tmp/wheels/pip-*.whl) && exec /opt/baton/bin/python "$pip/pip" install --quiet \
    --no-index --find-links /tmp/wheels --no-cache-dir --no-warn-script-location \
    "$(ls /tmp/wheels/baton_oauth-*.whl)[server]"'

# Smaller: the compiled modules without their symbol tables (uvloop, asyncpg, cryptography and
# SQLAlchemy ship them: 50 MB of modules become 16 MB), and no C or Cython sources or test suites
# of the dependencies. The check below (and tests/packaging/test_image.py) runs the stripped ones.
site=$(echo "$root"/opt/baton/lib/python3*/site-packages)
if command -v strip >/dev/null; then
    find "$site" -name '*.so' -exec strip --strip-unneeded {} +
fi
find "$site" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.pyx' \
    -o -name '*.pxd' \) -delete
find "$site" -mindepth 2 -maxdepth 2 -type d -name tests ! -path '*/baton/*' -exec rm -rf {} +

# Every compiled module loads (a library the wheels expect of the system would be missing).
in_root /opt/baton/bin/python -c 'import argon2, asyncpg, cryptography.hazmat.bindings._rust, \
    greenlet, httptools, markupsafe._speedups, uvloop, sqlalchemy.ext.asyncio'
in_root /opt/baton/bin/baton --version

install -m 0755 "$root/tmp/wheels/healthcheck.py" "$root/usr/local/bin/baton-healthcheck"
sed -i '1i #!/usr/bin/python3 -I' "$root/usr/local/bin/baton-healthcheck"

# The service user, as deploy/systemd's DynamicUser would be: no login, no password, its home
# the state directory (the SQLite database and the session key file), which only it may read.
echo "baton:x:$uid:$uid:Baton:/var/lib/baton:/usr/sbin/nologin" >>"$root/etc/passwd"
echo "baton:x:$uid:" >>"$root/etc/group"
if [ -f "$root/etc/shadow" ]; then echo "baton:!*:::::::" >>"$root/etc/shadow"; fi
install -d -o "$uid" -g "$uid" -m 0700 "$root/var/lib/baton"

# No setuid or setgid program (Debian's su, newgrp, passwd, chage...): nothing in the container
# may gain privileges by running one, even where `podman run` is not given
# `--security-opt no-new-privileges`.
find "$root" -xdev -type f -perm /6000 -exec chmod ug-s {} +

# What only the build needed, and what no container reads.
rm -rf "$root/tmp/wheels" "$root/root/.cache"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old
find "$root/var/log" -type f -delete
