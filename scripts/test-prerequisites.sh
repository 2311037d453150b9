#!/bin/bash
# `npm test` runs this first (the "pretest" script). It checks that every program the test
# suite uses is present and, when one is missing, installs the Debian packages that have
# them, or says exactly what to run.
#
# - As root with apt-get (Debian 12, Ubuntu 24.04, CI): `apt-get update` and `apt-get
#   install -y --no-install-recommends` of exactly the missing packages, without stdin.
#   Services in them are not started meanwhile (a temporary policy-rc.d, when the system
#   has none of its own): the tests start what they need inside their own namespaces and
#   containers.
# - As root without apt-get, or with DYNMHS_TEST_NO_INSTALL=1: fails, naming what is
#   missing and the command that would install it.
# - Not as root: installs nothing and does not fail; the tests that need root skip and say
#   why, the unit tests run.
#
# Node (>= 20), npm, g++, make, python3 (the native binding's build), git and iproute2 are
# the README's own prerequisites; this list is what the tests need beyond them.
set -euo pipefail

# sudo's secure_path has the sbin directories; a plain `su` may not.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# what is needed (a command on PATH, or an absolute path) | Debian package | used by
readonly NEEDS='
ip                                  iproute2           namespaces, veth links, routes and rules of every real-kernel test
nft                                 nftables           per-interface echo-request counters (test/netns, test/managers traffic proof)
ping                                iputils-ping       traffic proof from each source address (test/netns, test/managers)
sysctl                              procps             forwarding in the manager testbed ISP namespaces (test/managers)
dnsmasq                             dnsmasq-base       DHCPv4 and router advertisements of the ISPs (test/managers)
/usr/sbin/NetworkManager            network-manager    the NetworkManager source, real NetworkManager (test/managers)
nmcli                               network-manager    connections up and down (test/managers)
/lib/systemd/systemd-networkd       systemd            the networkd source, real systemd-networkd (test/managers)
networkctl                          systemd            networkctl reconfigure (test/managers)
busctl                              systemd            private buses and the D-Bus service (test/dbus, test/managers)
systemd-analyze                     systemd            the unit security score (test/install)
dbus-daemon                         dbus-daemon        private system buses (test/dbus, test/managers)
/usr/share/dbus-1/system.conf       dbus               the system bus configuration the private buses include
/lib/systemd/system/dbus.service    dbus               the system bus of the systemd containers (test/system)
/usr/lib/polkit-1/polkitd           polkitd            authorization of the D-Bus methods (test/dbus)
systemd-nspawn                      systemd-container  containers booting with systemd as PID 1 (test/system)
dpkg-buildpackage                   dpkg-dev           building the Debian package (npm run deb; test/install, test/system)
dh                                  debhelper          building the Debian package (npm run deb; test/install, test/system)
lintian                             lintian            checking the Debian package (test/install)
'

missing_packages=()
missing_what=()
while read -r need package _; do
    [ -n "$need" ] || continue
    if [[ "$need" == /* ]]; then
        [ -e "$need" ] && continue
    else
        command -v "$need" >/dev/null 2>&1 && continue
    fi
    missing_what+=("$need ($package)")
    case " ${missing_packages[*]-} " in
        *" $package "*) ;;
        *) missing_packages+=("$package") ;;
    esac
done <<<"$NEEDS"

if [ ${#missing_packages[@]} -eq 0 ]; then
    echo "test prerequisites: all present"
    exit 0
fi

install_command="apt-get update && apt-get install --no-install-recommends ${missing_packages[*]}"

if [ "$(id -u)" -ne 0 ]; then
    echo "test prerequisites: not root, so the tests that need root will skip (each says why); missing for them:" >&2
    printf '  %s\n' "${missing_what[@]}" >&2
    echo "  to install them and run everything: sudo npm test (it runs: $install_command)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || [ "${DYNMHS_TEST_NO_INSTALL:-}" = 1 ]; then
    echo "test prerequisites: missing:" >&2
    printf '  %s\n' "${missing_what[@]}" >&2
    if command -v apt-get >/dev/null 2>&1; then
        echo "install them with: $install_command" >&2
    else
        echo "no apt-get here: install the programs above with this system's package manager (Debian names: ${missing_packages[*]})" >&2
    fi
    exit 1
fi

echo "test prerequisites: installing ${missing_packages[*]}, for:"
printf '  %s\n' "${missing_what[@]}"

# No service of these packages starts during the installation (invoke-rc.d and
# deb-systemd-invoke ask policy-rc.d); a policy the system has is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# temporary, from dynmhs scripts/test-prerequisites.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/dynmhs-test-prerequisites.XXXXXX.log")
apt_get=(apt-get -q -o DPkg::Lock::Timeout=300)
echo "  apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]} (output: $log)"
if ! { "${apt_get[@]}" update && "${apt_get[@]}" install -y --no-install-recommends "${missing_packages[@]}"; } </dev/null >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "test prerequisites: apt-get failed (above; all of it in $log). Install by hand: $install_command" >&2
    exit 1
fi

still_missing=()
while read -r need package _; do
    [ -n "$need" ] || continue
    if [[ "$need" == /* ]]; then [ -e "$need" ] || still_missing+=("$need ($package)")
    else command -v "$need" >/dev/null 2>&1 || still_missing+=("$need ($package)"); fi
done <<<"$NEEDS"
if [ ${#still_missing[@]} -ne 0 ]; then
    echo "test prerequisites: still missing after the installation:" >&2
    printf '  %s\n' "${still_missing[@]}" >&2
    exit 1
fi
echo "test prerequisites: installed ${missing_packages[*]}"
