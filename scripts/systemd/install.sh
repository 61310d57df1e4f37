#!/usr/bin/env bash
# Installs Sluice as systemd services: the binaries into PREFIX/bin, the configuration into
# /etc/sluice (kept if present), the units into /etc/systemd/system, a `sluice` system user,
# then enables the units. Run as root on the machine that runs the daemon(s).
#
#   scripts/systemd/install.sh [--prefix /usr/local] [--root DIR] [--no-enable] [jobmanager] [taskmanager]
#
# --root DIR stages everything under DIR instead of / (no user, no systemctl): packaging, and
# the test that runs `systemd-analyze verify` on the installed units. Without a daemon name both
# units are installed. Then: systemctl start sluice-jobmanager; journalctl -u sluice-jobmanager.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

prefix=/usr/local; root=""; enable=1; daemons=()
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --no-enable) enable=0; shift ;;
        jobmanager|taskmanager) daemons+=("$1"); shift ;;
        *) die "unknown argument '$1' (see the head of $0)" ;;
    esac
done
[ ${#daemons[@]} -gt 0 ] || daemons=(jobmanager taskmanager)

bin_src=$(sluice_bin_dir)
for b in jobmanager taskmanager sluice; do
    [ -x "$bin_src/$b" ] || die "$bin_src/$b not found: build first (cargo build --release --bins)"
done

bindir="$prefix/bin"; docdir="$prefix/share/doc/sluice"
install -d "$root$bindir" "$root$docdir" "$root/etc/sluice" "$root/etc/systemd/system"
for b in jobmanager taskmanager sluice; do install -m 0755 "$bin_src/$b" "$root$bindir/$b"; done
install -m 0644 "$SLUICE_HOME/README.md" "$root$docdir/README.md"
if [ ! -e "$root/etc/sluice/config.yaml" ]; then
    install -m 0644 "$SLUICE_CONF_DIR/config.yaml" "$root/etc/sluice/config.yaml"
fi
for d in "${daemons[@]}"; do
    sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" \
        "$SLUICE_HOME/scripts/systemd/sluice-$d.service" > "$root/etc/systemd/system/sluice-$d.service"
    chmod 0644 "$root/etc/systemd/system/sluice-$d.service"
    echo "Installed sluice-$d.service ($root/etc/systemd/system)"
done

[ -z "$root" ] || exit 0
if ! id sluice >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice
fi
if [ "$enable" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    for d in "${daemons[@]}"; do systemctl enable "sluice-$d.service"; done
    echo "Enabled. Start with: systemctl start ${daemons[*]/#/sluice-}"
fi
