#!/bin/bash
# `meson install` lays out what a distro package ships: librte_vhost.so.23.0
# with the .so.23 (SONAME) and .so (linker) symlinks in libdir, and the five
# generated headers, identical to include/, in includedir/<header_subdir>.
# Installs into a temporary DESTDIR; nothing is written outside it.
# usage: tests/abi/install.sh [BUILDDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=${1:-build}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail=0
check() { if [ "$2" = ok ]; then echo "PASS: $1"; else echo "FAIL: $1"; fail=1; fi; }

meson install -C "$builddir" --no-rebuild --quiet --destdir "$dest" >/dev/null
opt() { meson introspect "$builddir" --buildoptions | python3 -c \
  "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name']==sys.argv[1]))" "$1"; }
prefix=$(opt prefix) libdir=$(opt libdir) includedir=$(opt includedir) sub=$(opt header_subdir)
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $includedir in /*) ;; *) includedir=$prefix/$includedir ;; esac
lib=$dest$libdir inc=$dest$includedir/$sub

[ -f "$lib/librte_vhost.so.23.0" ] && [ ! -L "$lib/librte_vhost.so.23.0" ] \
  && check "$libdir/librte_vhost.so.23.0 installed" ok || check "$libdir/librte_vhost.so.23.0 installed" fail
[ "$(readlink "$lib/librte_vhost.so.23" 2>/dev/null)" = librte_vhost.so.23.0 ] \
  && check "librte_vhost.so.23 -> librte_vhost.so.23.0" ok || check "librte_vhost.so.23 symlink" fail
[ "$(readlink -f "$lib/librte_vhost.so" 2>/dev/null)" = "$lib/librte_vhost.so.23.0" ] \
  && check "librte_vhost.so -> librte_vhost.so.23.0" ok || check "librte_vhost.so symlink" fail
soname=$(readelf -d "$lib/librte_vhost.so.23.0" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = librte_vhost.so.23 ] && check "installed SONAME $soname" ok || check "installed SONAME '$soname'" fail
for h in rte_vhost.h rte_vhost_async.h rte_vdpa.h vdpa_driver.h rte_vhost_crypto.h; do
  cmp -s "include/$h" "$inc/$h" && check "$includedir/$sub/$h installed" ok || check "$includedir/$sub/$h installed" fail
done
# Nothing else: no static archive, no Rust artefacts.
extra=$(cd "$dest" && find . -type f -o -type l | grep -Ev "librte_vhost\.so(\.23(\.0)?)?$|/$sub/(rte_vhost|rte_vhost_async|rte_vdpa|vdpa_driver|rte_vhost_crypto)\.h$" || true)
[ -z "$extra" ] && check "nothing else installed" ok || { echo "$extra"; check "nothing else installed" fail; }
exit $fail
