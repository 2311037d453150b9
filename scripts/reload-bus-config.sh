#!/bin/bash
# Have the running system bus read its configuration (bus policies) now:
# called by install-system.sh and uninstall-system.sh after they changed /.
# dbus-daemon may have looked at the policy directory before a new file was complete, or
# not watch it at all: without this, the daemon cannot own its bus name at its first start.
# No system bus running: nothing to do. (busctl and dbus-send --system honour
# DBUS_SYSTEM_BUS_ADDRESS, which can name a bus elsewhere.)
set -u
[ -n "${DBUS_SYSTEM_BUS_ADDRESS:-}" ] || [ -S /run/dbus/system_bus_socket ] || exit 0
if command -v busctl >/dev/null; then
    busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig && exit 0
elif command -v dbus-send >/dev/null; then
    dbus-send --system --print-reply --type=method_call --dest=org.freedesktop.DBus \
        / org.freedesktop.DBus.ReloadConfig >/dev/null && exit 0
else
    echo "  note: neither busctl nor dbus-send is installed; make the bus policy change live with: systemctl reload dbus"
    exit 0
fi
echo "  warning: the system bus did not reload its configuration; run: systemctl reload dbus" >&2
exit 0
