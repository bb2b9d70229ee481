#!/bin/sh
# Install the named command-line tools from Debian's packages when missing.
# Usage: install-tools.sh curl wrk h2load
set -e
missing=""
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 && continue
  case "$tool" in
    h2load) missing="$missing nghttp2-client" ;;
    *) missing="$missing $tool" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "missing tools; install these Debian packages:$missing" >&2
  exit 1
fi
