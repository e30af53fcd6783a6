#!/usr/bin/env bash
# Gathers what a GPU machine lacks to build udaci (issue #10, docs/gpu.md):
# the headers, CMake package files and the few libraries of fmt,
# nlohmann-json, Catch2 v2, CLI11 and PCRE2 (udaci uses no spdlog), plus
# pkgconf to read PCRE2's .pc file. Such a machine has PyTorch with CUDA (the
# LibTorch to build against), a compiler, CMake and nvcc, but no apt and no
# network, and may not be Debian; it is x86-64 like this one.
#
# Run here, on Debian 12 with network (apt-get download + dpkg -x, no root
# needed for those; `apt-get update` first if the package lists are stale):
#   bash scripts/gather_gpu_deps.sh          # -> .gpu-deps/ (git-ignored)
# The folder is a prefix: point CMake at it with
#   -DCMAKE_PREFIX_PATH=$PWD/.gpu-deps/usr
#   -Dfmt_DIR=$PWD/.gpu-deps/usr/lib/x86_64-linux-gnu/cmake/fmt
#     (CMake searches lib/<arch>/cmake only where it knows the distro's arch)
#   PKG_CONFIG_PATH=$PWD/.gpu-deps/usr/lib/x86_64-linux-gnu/pkgconfig
#   PKG_CONFIG_EXECUTABLE / -DPKG_CONFIG_EXECUTABLE=$PWD/.gpu-deps/usr/bin/pkgconf
#     with LD_LIBRARY_PATH=$PWD/.gpu-deps/usr/lib/x86_64-linux-gnu (libpkgconf)
# tools/device/gpu_check.sh does all of that. The .pc files are rewritten to
# be relocatable (prefix=${pcfiledir}/../../..), so the folder works wherever
# the tree lands. Documentation, man pages and unused libraries are dropped to
# keep the folder small (it travels with the tree: the device tool carries at
# most 64 MiB in all); the script fails if it exceeds 20 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-.gpu-deps}
PACKAGES=(
  libfmt-dev libfmt9                 # fmt (used header-only; its CMake targets name the .so)
  nlohmann-json3-dev                 # nlohmann_json
  catch2                             # Catch2 v2 (header, CMake package, Catch.cmake)
  libcli11-dev                       # CLI11
  libpcre2-dev libpcre2-8-0          # PCRE2 (8-bit library, headers, .pc)
  pkgconf-bin libpkgconf3            # pkg-config, for pkg_check_modules(libpcre2-8)
)
MAX_MB=20

command -v apt-get >/dev/null || { echo "gather_gpu_deps: needs apt-get (Debian 12)" >&2; exit 1; }
command -v dpkg >/dev/null || { echo "gather_gpu_deps: needs dpkg" >&2; exit 1; }

debs=$(mktemp -d)
chmod 755 "$debs"  # apt downloads as _apt where it can
trap 'rm -rf "$debs"' EXIT
echo "gather_gpu_deps: downloading ${PACKAGES[*]}"
(cd "$debs" && apt-get download -q "${PACKAGES[@]}" >/dev/null)

rm -rf "$OUT"
mkdir -p "$OUT"
for deb in "$debs"/*.deb; do
  dpkg -x "$deb" "$OUT"
  echo "  $(basename "$deb")"
done

# Drop what a build does not read.
rm -rf "$OUT/usr/share/doc" "$OUT/usr/share/man" "$OUT/usr/share/lintian" "$OUT/usr/share/aclocal"
lib="$OUT/usr/lib/x86_64-linux-gnu"
# PCRE2: only the 8-bit library is linked; the 16/32-bit and POSIX ones and
# the static archives are not.
rm -f "$lib"/libpcre2-16* "$lib"/libpcre2-32* "$lib"/libpcre2-posix* "$lib"/*.a \
      "$lib"/pkgconfig/libpcre2-16.pc "$lib"/pkgconfig/libpcre2-32.pc "$lib"/pkgconfig/libpcre2-posix.pc
rm -f "$OUT/usr/bin/pcre2-config"

# Relocatable .pc files (${pcfiledir} is pkg-config's, not the shell's).
# shellcheck disable=SC2016
for pc in "$lib"/pkgconfig/*.pc "$OUT"/usr/share/pkgconfig/*.pc; do
  [ -f "$pc" ] || continue
  case "$pc" in
    */usr/share/pkgconfig/*) rel='${pcfiledir}/../..' ;;
    *) rel='${pcfiledir}/../../..' ;;
  esac
  sed -i "s|^prefix=/usr\$|prefix=$rel|" "$pc"
done
# pkg-config under its usual name, next to pkgconf.
[ -e "$OUT/usr/bin/pkg-config" ] || ln -s pkgconf "$OUT/usr/bin/pkg-config"

# Checks: every file a build needs is there.
for f in usr/include/fmt/format.h usr/include/nlohmann/json.hpp usr/include/catch2/catch.hpp \
         usr/include/CLI/CLI.hpp usr/include/pcre2.h \
         usr/lib/x86_64-linux-gnu/cmake/fmt/fmt-config.cmake \
         usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake \
         usr/lib/cmake/Catch2/Catch2Config.cmake usr/lib/cmake/Catch2/Catch.cmake \
         usr/share/cmake/CLI11/CLI11Config.cmake \
         usr/lib/x86_64-linux-gnu/pkgconfig/libpcre2-8.pc usr/lib/x86_64-linux-gnu/libpcre2-8.so \
         usr/bin/pkgconf; do
  [ -e "$OUT/$f" ] || { echo "gather_gpu_deps: missing $f" >&2; exit 1; }
done
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_LIBDIR="$lib/pkgconfig" \
  "$OUT/usr/bin/pkgconf" --cflags --libs libpcre2-8 | sed 's/^/gather_gpu_deps: pkgconf libpcre2-8: /'

kb=$(du -sk "$OUT" | cut -f1)
echo "gather_gpu_deps: $OUT holds $((kb / 1024)).$(( (kb % 1024) * 10 / 1024 )) MiB in $(find "$OUT" -type f | wc -l) files"
if [ "$kb" -gt $((MAX_MB * 1024)) ]; then
  echo "gather_gpu_deps: more than $MAX_MB MiB: too large to travel with the tree" >&2
  exit 1
fi
