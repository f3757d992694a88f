#!/bin/sh
# The modern engine's container (testbed/modern.py starts it): what dockerd needs, then dockerd.
set -e
# The host's cgroups are v1, mounted read-only into a container; dockerd makes its containers' own.
for d in /sys/fs/cgroup /sys/fs/cgroup/*; do
    mountpoint -q "$d" && mount -o remount,bind,rw "$d" 2>/dev/null || true
done
# Read-only, it fails each container start with "failed to disable IPv6 on container's interface".
mount -o remount,bind,rw /proc/sys 2>/dev/null || true
# Every TCP connection to 127.0.0.1 (but the relay's own) goes to the relay, which has the host's
# side connect it to the host's 127.0.0.1 at the port it was going to (testbed/loopback.py). Build
# containers on the host network are in this namespace, so a loopback mirror works from RUN too.
iptables -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp ! --dport "$RELAY_PORT" -j REDIRECT --to-ports "$RELAY_PORT"
python3 /pib/loopback.py inside "$RELAY_PORT" /run/pib/loopback.sock &
mkdir -p /etc/docker
echo '{"features": {"containerd-snapshotter": true}}' > /etc/docker/daemon.json
exec dockerd --host unix:///run/pib/docker.sock --host unix:///var/run/docker.sock
