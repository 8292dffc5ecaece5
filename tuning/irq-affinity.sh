#!/usr/bin/env bash
# Spreads a NIC's interrupts, RPS and XPS over the CPUs that do NOT run shards,
# so that packet processing and ringcache's executors do not share a core.
#
#   tuning/irq-affinity.sh IFACE SHARD_CPUS     e.g. tuning/irq-affinity.sh eth0 2-15
#
# Then start ringcache restricted to those CPUs (it takes its shards from its CPU
# mask): `taskset -c 2-15 ringcache ...`, or CPUAffinity=2-15 in the systemd unit.
# Prints what it would write with DRY_RUN=1. Needs root.
set -euo pipefail

iface=${1:?usage: irq-affinity.sh IFACE SHARD_CPUS}
shard_cpus=${2:?usage: irq-affinity.sh IFACE SHARD_CPUS}

expand() { # "0-3,8" -> "0 1 2 3 8"
    local part out=()
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
    done
    echo "${out[@]}"
}

write() { # value file
    if [ "${DRY_RUN:-0}" = 1 ]; then echo "$1 > $2"; else echo "$1" >"$2"; fi
}

all=$(expand "$(cat /sys/devices/system/cpu/online)")
shards=" $(expand "$shard_cpus") "
irq_cpus=()
for c in $all; do [[ $shards == *" $c "* ]] || irq_cpus+=("$c"); done
if [ ${#irq_cpus[@]} -eq 0 ]; then
    echo "every CPU runs a shard: leave at least one for interrupts" >&2
    exit 1
fi
mask=0
for c in "${irq_cpus[@]}"; do mask=$((mask | (1 << c))); done
hexmask=$(printf '%x' "$mask")
echo "interrupts, RPS and XPS for $iface on CPUs ${irq_cpus[*]} (mask $hexmask); shards on $shard_cpus"

# Stop irqbalance from moving them back.
if systemctl is-active --quiet irqbalance 2>/dev/null; then
    [ "${DRY_RUN:-0}" = 1 ] && echo "systemctl stop irqbalance" || systemctl stop irqbalance
fi

i=0
for irq in $(grep -E "$iface(-|$)|$iface[-:]" /proc/interrupts | awk -F: '{print $1}' | tr -d ' '); do
    cpu=${irq_cpus[$((i % ${#irq_cpus[@]}))]}
    write "$cpu" "/proc/irq/$irq/smp_affinity_list"
    i=$((i + 1))
done
for q in /sys/class/net/"$iface"/queues/rx-*; do
    [ -e "$q/rps_cpus" ] && write "$hexmask" "$q/rps_cpus"
done
for q in /sys/class/net/"$iface"/queues/tx-*; do
    [ -e "$q/xps_cpus" ] && write "$hexmask" "$q/xps_cpus"
done
