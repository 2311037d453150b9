#!/bin/bash
# Remove what scripts/install-system.sh installed:  sudo npm run uninstall-system
#
#   DESTDIR, PREFIX   as given to install-system.sh
#   KEEP_STATE=yes    keep /var/lib/dynmhs (table allocations) and /var/log/dynmhs
#
# Reads PREFIX/lib/dynmhs/install-manifest and removes exactly the files and the
# (then empty) directories listed there. /etc/dynmhs/dynmhs.conf is removed only if
# it is still the file the installer put there; an edited one is kept and reported.
set -euo pipefail

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
MANIFEST=$PREFIX/lib/dynmhs/install-manifest
CONFIG=$SYSCONFDIR/dynmhs/dynmhs.conf

if [ ! -f "$DESTDIR$MANIFEST" ]; then
    echo "uninstall-system: no manifest at $DESTDIR$MANIFEST: dynmhs is not installed there (check DESTDIR and PREFIX)" >&2
    exit 2
fi
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall-system: removing from / needs root (sudo npm run uninstall-system)" >&2; exit 2
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet dynmhs.service 2>/dev/null; then
    echo "Stopping dynmhs.service"
    systemctl disable --now dynmhs.service || true
fi

LIST=$(mktemp "${TMPDIR:-/tmp}/dynmhs-uninstall.XXXXXX")
trap 'rm -f "$LIST"' EXIT
DIRS=()
removed=0
kept=()
while IFS= read -r line; do
    case "$line" in
        "#"*|"") continue ;;
        "d "*) DIRS+=("${line#d }") ;;
        "f "*)
            rest=${line#f }
            sum=${rest##* }
            path=${rest% *}
            [ -e "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ] || continue
            if [ "$path" = "$CONFIG" ] && [ "$(sha256sum < "$DESTDIR$path" | cut -d' ' -f1)" != "$sum" ]; then
                kept+=("$path")
                continue
            fi
            printf '%s\0' "$DESTDIR$path" >> "$LIST"
            removed=$((removed + 1))
            ;;
        *) echo "uninstall-system: ignoring a manifest line I do not understand: $line" >&2 ;;
    esac
done < "$DESTDIR$MANIFEST"
xargs -0 -r rm -f < "$LIST"
rm -f "$DESTDIR$MANIFEST"

# directories the installer created, deepest first, only when empty
for ((i=${#DIRS[@]}-1; i>=0; i--)); do
    rmdir "$DESTDIR${DIRS[i]}" 2>/dev/null || true
done
echo "Removed $removed files"
# The unit's StateDirectory (table allocations) and LogsDirectory, which systemd created at
# the first start: gone too, as after `apt purge`, unless KEEP_STATE=yes.
if [ "${KEEP_STATE:-no}" != yes ]; then
    for dir in /var/lib/dynmhs /var/log/dynmhs; do
        [ -e "$DESTDIR$dir" ] || continue
        rm -rf -- "$DESTDIR$dir"
        echo "Removed $dir"
    done
fi
for path in "${kept[@]}"; do echo "Kept $path: it was changed after installation"; done

if [ -z "$DESTDIR" ]; then
    # the bus policy is gone: the system bus forgets it now, systemd the unit
    bash "$(dirname "$0")/reload-bus-config.sh"
    [ ! -d /run/systemd/system ] || systemctl daemon-reload || true
fi
