#!/bin/bash
# Build the Debian package:  npm run deb   (after npm install)
#
#   DYNMHS_DEB_VERSION=0.1.1   package version (default: "version" of package.json)
#   DYNMHS_DEB_OUTDIR=DIR      where the .deb goes (default: build/deb; tests use their own)
#
# Builds with Debian's tools (debian/: debhelper 13, dpkg-buildpackage) in a temporary
# copy of this tree, so that nothing but build/deb/ is written here, and leaves
# build/deb/dynmhs_<version>_<arch>.deb. The build log goes to stderr; the last line
# of stdout is the absolute path of the package.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${DYNMHS_DEB_OUTDIR:-$REPO/build/deb}
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac

for tool in dpkg-buildpackage dh dpkg-architecture; do
    command -v "$tool" >/dev/null || {
        echo "build-deb: $tool not found; install: apt-get install --no-install-recommends dpkg-dev debhelper" >&2; exit 2; }
done
[ -f "$REPO/dist/src/main.js" ] && [ -f "$REPO/node_modules/netlink/build/Release/netlink_binding.node" ] || {
    echo "build-deb: run npm install first (it compiles dist/ and builds the patched netlink binding)" >&2; exit 2; }

VERSION=${DYNMHS_DEB_VERSION:-$(node -p 'require(process.argv[1]).version' "$REPO/package.json")}
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || {
    echo "build-deb: '$VERSION' is not a Debian native version (digits first, then [A-Za-z0-9.+~])" >&2; exit 2; }
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
DEB=dynmhs_${VERSION}_${ARCH}.deb

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dynmhs-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/dynmhs-$VERSION
mkdir "$SRC"
# the tree as npm install left it, without what the package cannot contain
tar -C "$REPO" --exclude=./.git --exclude=./build --exclude=./dist/test --exclude=./dist/bench \
    --exclude=./dist/demo -cf - . | tar -C "$SRC" -xf -

top=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
if [ "$top" != "$VERSION" ]; then
    # a build of another version: its own changelog entry on top
    {
        echo "dynmhs ($VERSION) unstable; urgency=medium"
        echo
        echo "  * Built from the dynmhs tree with version $VERSION."
        echo
        echo " -- $(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Maintainer)  $(date -R)"
        echo
        cat "$SRC/debian/changelog"
    } > "$WORK/changelog"
    mv "$WORK/changelog" "$SRC/debian/changelog"
fi

echo "build-deb: building $DEB" >&2
(cd "$SRC" && dpkg-buildpackage -b -us -uc -d) >&2
mkdir -p "$OUT"
mv -f "$WORK/$DEB" "$OUT/$DEB"
echo "$OUT/$DEB"
