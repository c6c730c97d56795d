#!/bin/sh
# Install the Debian packages the real-server test bed needs, and only those that are missing.
#
# The test bed (tests/testbed/) runs its own Dovecot and PostgreSQL instances on free ports
# under temp dirs; it only needs the binaries. Safe to run again and again: when everything is
# there it does nothing, not even `apt-get update`. Needs root (or sudo) to install.
set -eu

# dovecot-imapd and dovecot-lmtpd pull in dovecot-core (the `dovecot` and `doveadm` binaries).
# `postgresql` is Debian's metapackage for the supported server version (15 on bookworm); the
# test bed picks the newest /usr/lib/postgresql/*/bin/initdb it finds.
# `chromium` renders the POAI report headless (tests/integration/test_poai.py) so a test
# sees the page as a person would. `openssl` and `gnupg` make the S/MIME and PGP mail the
# format tests read (tests/testbed/formats.py).
PACKAGES="dovecot-imapd dovecot-lmtpd postgresql chromium systemd openssl gnupg"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "ensure-test-packages: all present ($PACKAGES)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "ensure-test-packages: missing:$missing; run as root to install them" >&2
    exit 1
fi

# Keep the packages' postinst scripts from starting system-wide dovecot/postgresql services:
# the tests never use them, and a system dovecot would hold ports 143/993 for nothing.
# Docker images usually ship such a policy already; only add (and later remove) our own.
POLICY=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# Added by mailflow scripts/ensure-test-packages.sh\nexit 101\n' |
        $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    added_policy=1
fi
cleanup() {
    if [ -n "$added_policy" ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT INT TERM

echo "ensure-test-packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2086  # word splitting of the package list is intended
$SUDO apt-get install -y --no-install-recommends $missing
