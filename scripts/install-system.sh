#!/bin/bash
# Install dynmhs as a system service:  sudo npm run install-system
#
#   DESTDIR=/tmp/root   stage into a directory instead of / (packaging, tests)
#   PREFIX=/usr/local   /usr for a distribution package
#   NODE=/usr/bin/node  the Node.js (>= 20) the wrappers run
#
# What goes where (PREFIX=/usr/local):
#   /usr/local/lib/dynmhs/                     daemon: dist/src, package.json, production node_modules
#   /usr/local/sbin/dynmhs                     wrapper (ExecStart of the unit)
#   /usr/local/bin/dynmhsctl                   wrapper
#   /usr/local/lib/systemd/system/dynmhs.service
#   /etc/dbus-1/system.d/no.nntb.DynMHS.conf   bus policy (/usr/share/dbus-1/system.d with PREFIX=/usr)
#   /usr/local/share/dbus-1/system-services/no.nntb.DynMHS.service   bus activation
#   /usr/share/polkit-1/actions/no.nntb.DynMHS.policy                polkit reads only this directory
#   /usr/local/lib/systemd/networkd.conf.d/dynmhs.conf               networkd leaves our rules alone
#   /etc/iproute2/rt_protos.d/dynmhs.conf      "249 dynmhs" for ip route/rule ... proto dynmhs
#   /etc/dynmhs/dynmhs.conf                    only if there is none yet; never overwritten
#   /usr/local/share/man/man{1,5,8}/           dynmhsctl(1), dynmhs.conf(5), dynmhs(8)
#   /usr/local/share/bash-completion/completions/{dynmhsctl,dynmhs}
# Every file and every directory it creates is listed in
# PREFIX/lib/dynmhs/install-manifest; scripts/uninstall-system.sh removes exactly those.
# Each file appears under its name at once and whole: it is written under a temporary name
# in its target directory, then renamed (dbus-daemon re-reads its policy directory when a
# file there changes, and would otherwise read a half-written or still unreadable file).
# Installed into / with a system bus running, the bus policy is made live (dbus
# ReloadConfig) and systemd reloads its units. The Debian package (debian/rules) stages
# its files with this script.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
NODE=${NODE:-$(command -v node || true)}

case "$PREFIX" in /*) ;; *) echo "install-system: PREFIX must be an absolute path, not '$PREFIX'" >&2; exit 2 ;; esac
case "$DESTDIR" in ""|/*) ;; *) echo "install-system: DESTDIR must be an absolute path, not '$DESTDIR'" >&2; exit 2 ;; esac
[ -n "$NODE" ] || { echo "install-system: node not found; set NODE=/path/to/node" >&2; exit 2; }
[ -f "$REPO/dist/src/main.js" ] && [ -f "$REPO/dist/src/cli/dynmhsctl.js" ] || {
    echo "install-system: $REPO/dist is not built; run: npm run build" >&2; exit 2; }
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "install-system: installing into / needs root (sudo npm run install-system), or set DESTDIR" >&2; exit 2
fi

LIBDIR=$PREFIX/lib/dynmhs
SBINDIR=$PREFIX/sbin
BINDIR=$PREFIX/bin
MANDIR=$PREFIX/share/man
COMPLETIONDIR=$PREFIX/share/bash-completion/completions
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
NETWORKD_CONFDIR=${NETWORKD_CONFDIR:-$PREFIX/lib/systemd/networkd.conf.d}
DBUS_SERVICEDIR=${DBUS_SERVICEDIR:-$PREFIX/share/dbus-1/system-services}
if [ "$PREFIX" = /usr ]; then DEFAULT_POLICYDIR=/usr/share/dbus-1/system.d; else DEFAULT_POLICYDIR=$SYSCONFDIR/dbus-1/system.d; fi
DBUS_POLICYDIR=${DBUS_POLICYDIR:-$DEFAULT_POLICYDIR}
POLKIT_ACTIONDIR=${POLKIT_ACTIONDIR:-/usr/share/polkit-1/actions}
RT_PROTOSDIR=${RT_PROTOSDIR:-$SYSCONFDIR/iproute2/rt_protos.d}
CONFDIR=$SYSCONFDIR/dynmhs
MANIFEST=$LIBDIR/install-manifest
# a packager's DESTDIR need not exist yet
[ -z "$DESTDIR" ] || mkdir -p "$DESTDIR"

if [ -e "$DESTDIR$MANIFEST" ]; then
    echo "install-system: dynmhs is already installed here ($DESTDIR$MANIFEST); run scripts/uninstall-system.sh first" >&2
    exit 2
fi

# ------------------------------------------------------------------ bookkeeping
ENTRIES=()           # "d PATH" / "f PATH SHA256", paths without DESTDIR
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/dynmhs-install.XXXXXX")
PENDING=             # a temporary file or tree in a target directory, not yet renamed
DONE=0
rollback() {         # a failed install takes back what it already put there
    local i entry path
    for ((i=${#ENTRIES[@]}-1; i>=0; i--)); do
        entry=${ENTRIES[i]}
        case $entry in
            "f "*) path=${entry#f }; rm -f "$DESTDIR${path% *}" ;;
            "d "*) rmdir "$DESTDIR${entry#d }" 2>/dev/null || true ;;
        esac
    done
    echo "install-system: failed; removed the ${#ENTRIES[@]} files and directories installed so far" >&2
}
trap 'rc=$?; [ -z "$PENDING" ] || rm -rf "$PENDING"; [ "$DONE" = 1 ] || [ ${#ENTRIES[@]} = 0 ] || rollback; rm -rf "$STAGE"; exit $rc' EXIT

mkdir_p() {          # create a directory and each missing parent; record the ones we created
    local dir=$1 missing=() d
    d=$dir
    while [ "$d" != / ] && [ ! -d "$DESTDIR$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
    for d in "${missing[@]}"; do
        mkdir -m 0755 "$DESTDIR$d"
        ENTRIES+=("d $d")
    done
}
# A temporary name next to TARGET that no watcher takes for the real file: dbus-daemon
# reads only *.conf, systemd only *.service etc., man and completion only by exact name.
temporary_beside() {
    local target=$1
    mktemp "$(dirname "$target")/.$(basename "$target").dynmhs-XXXXXX"
}
put() {              # put MODE SOURCE TARGET
    local mode=$1 src=$2 dst=$3
    mkdir_p "$(dirname "$dst")"
    PENDING=$(temporary_beside "$DESTDIR$dst")
    cat "$src" > "$PENDING"
    chmod "$mode" "$PENDING"
    mv -fT "$PENDING" "$DESTDIR$dst"
    PENDING=
    ENTRIES+=("f $dst $(sha256sum < "$DESTDIR$dst" | cut -d' ' -f1)")
}
put_tree() {         # put_tree SOURCE_DIR TARGET_DIR: a whole new tree, modes 0755 for directories and scripts, else 0644
    local src=$1 dst=$2 rel
    if [ -e "$DESTDIR$dst" ] || [ -L "$DESTDIR$dst" ]; then
        echo "install-system: $DESTDIR$dst is there already but no install manifest names it; remove it first" >&2
        exit 1
    fi
    mkdir_p "$(dirname "$dst")"
    PENDING=$(mktemp -d "$(dirname "$DESTDIR$dst")/.$(basename "$dst").dynmhs-XXXXXX")
    cp -R --no-preserve=all "$src/." "$PENDING/"
    chmod -R u=rwX,go=rX "$PENDING"
    find "$PENDING" -type f -perm /111 -exec chmod a-x {} +
    # executable: scripts ("#!"), not what npm packages happen to mark executable (type
    # definitions); the native binding is a shared object, loaded, not executed
    find "$PENDING" -type f -print0 | xargs -0 -r node -e '
        const fs = require("node:fs");
        for (const file of process.argv.slice(1)) {
            const head = Buffer.alloc(2);
            const fd = fs.openSync(file, "r");
            const n = fs.readSync(fd, head, 0, 2, 0);
            fs.closeSync(fd);
            if (n === 2 && head.toString("latin1") === "#!") fs.chmodSync(file, 0o755);
        }' --
    ENTRIES+=("d $dst")
    while IFS= read -r -d '' rel; do
        ENTRIES+=("d $dst/$rel")
    done < <(cd "$PENDING" && find . -mindepth 1 -type d -printf '%P\0' | sort -z)
    while IFS= read -r line; do
        ENTRIES+=("f $dst/${line#*  } ${line%%  *}")
    done < <(cd "$PENDING" && find . -type f -printf '%P\0' | sort -z | xargs -0 -r sha256sum)
    while IFS= read -r -d '' rel; do             # symbolic links (node_modules/.bin): no checksum
        ENTRIES+=("f $dst/$rel -")
    done < <(cd "$PENDING" && find . -type l -printf '%P\0' | sort -z)
    mv -T "$PENDING" "$DESTDIR$dst"
    PENDING=
}

# ------------------------------------------------------------------ the daemon and its modules
echo "Installing dynmhs into ${DESTDIR:-/} (PREFIX=$PREFIX)"
# production modules only: the top-level package directories npm's lockfile does not mark
# "dev" (what `npm ci --omit=dev` installs), copied from the tree we already have (no network
# needed; nested node_modules come with their parent). Not `npm ls --omit=dev`: now and then,
# on a busy machine, it listed only part of the tree.
mapfile -t PACKAGES < <(cd "$REPO" && node -e '
const { existsSync } = require("node:fs");
const packages = require("./package-lock.json").packages ?? {};
const dirs = Object.entries(packages)
  .filter(([path, entry]) => /^node_modules\/(@[^/]+\/)?[^/@]+$/.test(path) && entry.dev !== true && existsSync(path))
  .map(([path]) => path);
console.log(dirs.sort().join("\n"));')
for dep in $(cd "$REPO" && node -e 'console.log(Object.keys(require("./package.json").dependencies || {}).join(" "))'); do
    printf '%s\n' "${PACKAGES[@]}" | grep -qx "node_modules/$dep" || {
        echo "install-system: dependency $dep is not installed in $REPO/node_modules; run: npm ci" >&2; exit 1; }
done
(cd "$REPO" && cp -a --parents "${PACKAGES[@]}" "$STAGE/")
# netlink: of its native code only the binding npm install patched and built
# (scripts/build-netlink.js); the rest of build/ is compiler intermediates, and prebuilds/
# holds upstream's unpatched binaries, which node-gyp-build would load if ours were missing.
BINDING=node_modules/netlink/build/Release/netlink_binding.node
[ -f "$STAGE/$BINDING" ] || {
    echo "install-system: $REPO/$BINDING is missing; build it: node scripts/build-netlink.js" >&2; exit 1; }
mv "$STAGE/$BINDING" "$STAGE/netlink_binding.node"
rm -rf "$STAGE/node_modules/netlink/build" "$STAGE/node_modules/netlink/prebuilds"
mkdir -p "$(dirname "$STAGE/$BINDING")"
mv "$STAGE/netlink_binding.node" "$STAGE/$BINDING"
# what the npm packages carry for their own development (.npmignore, .eslintrc, .travis.yml,
# .github/, .nyc_output/, ...) is not needed to run them
find "$STAGE/node_modules" -mindepth 2 -name '.*' -prune -exec rm -rf {} +
mkdir -p "$STAGE/dist"
cp -a "$REPO/dist/src" "$STAGE/dist/src"
put_tree "$STAGE/dist" "$LIBDIR/dist"
put_tree "$STAGE/node_modules" "$LIBDIR/node_modules"
put 0644 "$REPO/package.json" "$LIBDIR/package.json"

# The daemon's Node options are on its own first line (see src/main.ts).
NODE_OPTIONS_OF_DAEMON=$(sed -n '1s|^#!/usr/bin/env -S node||p' "$REPO/dist/src/main.js")
[ -n "$NODE_OPTIONS_OF_DAEMON" ] || {
    echo "install-system: $REPO/dist/src/main.js does not start with '#!/usr/bin/env -S node OPTIONS'; rebuild it: npm run build" >&2; exit 2; }
cat > "$STAGE/dynmhs" <<EOF
#!/bin/sh
# dynmhs daemon (installed by dynmhs's scripts/install-system.sh)
# No TLS here: Node would read and parse this certificate file at every start.
unset NODE_EXTRA_CA_CERTS
exec $NODE$NODE_OPTIONS_OF_DAEMON $LIBDIR/dist/src/main.js "\$@"
EOF
cat > "$STAGE/dynmhsctl" <<EOF
#!/bin/sh
# dynmhsctl (installed by dynmhs's scripts/install-system.sh)
exec $NODE $LIBDIR/dist/src/cli/dynmhsctl.js "\$@"
EOF
put 0755 "$STAGE/dynmhs" "$SBINDIR/dynmhs"
put 0755 "$STAGE/dynmhsctl" "$BINDIR/dynmhsctl"

# ------------------------------------------------------------------ system integration
sed -e "s|/usr/local/sbin/dynmhs|$SBINDIR/dynmhs|g" -e "s|/etc/dynmhs/|$CONFDIR/|g" \
    "$REPO/systemd/dynmhs.service" > "$STAGE/dynmhs.service"
put 0644 "$STAGE/dynmhs.service" "$UNITDIR/dynmhs.service"
put 0644 "$REPO/dbus/no.nntb.DynMHS.conf" "$DBUS_POLICYDIR/no.nntb.DynMHS.conf"
put 0644 "$REPO/dbus/no.nntb.DynMHS.service" "$DBUS_SERVICEDIR/no.nntb.DynMHS.service"
put 0644 "$REPO/polkit/no.nntb.DynMHS.policy" "$POLKIT_ACTIONDIR/no.nntb.DynMHS.policy"
if [ -f "$REPO/systemd/networkd.conf.d/dynmhs.conf" ]; then
    put 0644 "$REPO/systemd/networkd.conf.d/dynmhs.conf" "$NETWORKD_CONFDIR/dynmhs.conf"
else
    echo "  note: systemd/networkd.conf.d/dynmhs.conf is not in this tree; not installed"
fi
if [ -f "$REPO/iproute2/rt_protos.d/dynmhs.conf" ]; then
    put 0644 "$REPO/iproute2/rt_protos.d/dynmhs.conf" "$RT_PROTOSDIR/dynmhs.conf"
else
    echo "  note: iproute2/rt_protos.d/dynmhs.conf is not in this tree; not installed"
fi
for page in dynmhs.8 dynmhsctl.1 dynmhs.conf.5; do
    put 0644 "$REPO/man/$page" "$MANDIR/man${page##*.}/$page"
done
put 0644 "$REPO/completion/dynmhsctl.bash" "$COMPLETIONDIR/dynmhsctl"
put 0644 "$REPO/completion/dynmhs.bash" "$COMPLETIONDIR/dynmhs"

# the configuration: an admin's file is never replaced
if [ -e "$DESTDIR$CONFDIR/dynmhs.conf" ]; then
    echo "  kept the existing $CONFDIR/dynmhs.conf (the default is in $LIBDIR/dynmhs.conf.default)"
else
    put 0644 "$REPO/scripts/dynmhs.conf.default" "$CONFDIR/dynmhs.conf"
fi
put 0644 "$REPO/scripts/dynmhs.conf.default" "$LIBDIR/dynmhs.conf.default"

# ------------------------------------------------------------------ manifest (itself last)
{
    echo "# dynmhs install manifest: DESTDIR=$DESTDIR PREFIX=$PREFIX; read by scripts/uninstall-system.sh"
    printf '%s\n' "${ENTRIES[@]}"
} > "$STAGE/install-manifest"
PENDING=$(temporary_beside "$DESTDIR$MANIFEST")
cat "$STAGE/install-manifest" > "$PENDING"
chmod 0644 "$PENDING"
mv -fT "$PENDING" "$DESTDIR$MANIFEST"
PENDING=
DONE=1
echo "Installed $(printf '%s\n' "${ENTRIES[@]}" | grep -c '^f ') files; manifest: $MANIFEST"

if [ -z "$DESTDIR" ]; then
    bash "$REPO/scripts/reload-bus-config.sh"
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # networkd reads networkd.conf.d only when it starts: until then it deletes our rules
        # on every reconfigure (dynmhs restores them, with a warning)
        if systemctl is-active --quiet systemd-networkd.service; then
            echo "Restarting systemd-networkd so that it leaves dynmhs's rules and routes alone ($NETWORKD_CONFDIR/dynmhs.conf)"
            systemctl try-restart systemd-networkd.service || true
        fi
        echo "Next: edit $CONFDIR/dynmhs.conf, then: systemctl enable --now dynmhs; dynmhsctl status"
    else
        echo "Next: edit $CONFDIR/dynmhs.conf, then start $SBINDIR/dynmhs --config $CONFDIR/dynmhs.conf"
    fi
fi
