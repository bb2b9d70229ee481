#!/bin/sh
# Build CPython 3.13 without the GIL (PEP 703) from Debian 13's source package and
# install it under $PREFIX (default ~/.cache/astra/python3.13t). Reused when present:
# the build takes 5-10 minutes on two cores. Prints the interpreter's path last.
#
# Why Debian's source: it is the CPython source this machine can reach (trixie's
# python3.13, 3.13.5); python.org is not reachable from here.
set -e
PREFIX=${PREFIX:-$HOME/.cache/astra/python3.13t}
PY="$PREFIX/bin/python3.13t"
if [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null; then
  echo "$PY"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "needs root for apt-get (deb-src and build dependencies)" >&2; exit 1; }
LIST=/etc/apt/sources.list.d/astra-trixie-src.sources
if [ ! -f "$LIST" ]; then
  cat > "$LIST" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update -qq >/dev/null
# What CPython's configure looks for; without them the build silently drops modules
# (ssl, sqlite3, ctypes via libffi, lzma, bz2, readline).
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential dpkg-dev pkg-config \
  libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev \
  libgdbm-dev uuid-dev libncurses-dev >/dev/null
WORK=$(mktemp -d "${TMPDIR:-/tmp}/astra-ft.XXXXXX")
cd "$WORK"
apt-get source -qq --download-only python3.13 >/dev/null
dpkg-source -x --skip-patches python3.13_*.dsc src >/dev/null
cd src
./configure -q --disable-gil --prefix="$PREFIX" --without-ensurepip >/dev/null
make -s -j"$(nproc)" >/dev/null 2>build.log || { tail -40 build.log >&2; exit 1; }
make -s altinstall >/dev/null 2>>build.log
cd /; rm -rf "$WORK"
"$PY" -m ensurepip -q >/dev/null 2>&1 || true
"$PY" -c 'import sys; assert not sys._is_gil_enabled(), "the GIL is still on"'
echo "$PY"
