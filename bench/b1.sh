#!/usr/bin/env bash
# Benchmark B1 (results in bench/RESULTS.md): backfill of generated likes, JSON lines file to
# file, exact dedup and all windows. Prints one line per figure and writes
# them, with the machine and the commit, to bench/RESULTS.md.
#
#   bench/b1.sh                       # 10,000,000 events, 3 runs
#   EVENTS=1000000 RUNS=1 bench/b1.sh # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
VIDEOS=${VIDEOS:-$((EVENTS / 10))}
USERS=${USERS:-$((EVENTS / 2))}
RUNS=${RUNS:-3}
out=bench/out
mkdir -p "$out"
go build -o "$out/virality" ./cmd/virality
go build -o "$out/decode" ./bench/decode
input="$out/b1-$EVENTS-$VIDEOS.jsonl"
if [ ! -f "$input" ]; then
  "$out/virality" gen --seed 1 --events "$EVENTS" --videos "$VIDEOS" --users "$USERS" \
    --duration 24h --out "$input.tmp" --truth-out "$out/b1-truth.jsonl"
  mv "$input.tmp" "$input"
fi

. bench/lib.sh # hostcpu, stolen
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rates=() rss=() disk=() ceil=()
read -r total0 steal0 < <(hostcpu)
for i in $(seq "$RUNS"); do
  rm -rf "$out/state"
  line=$("$out/virality" backfill --in "$input" --out "$out/scores.jsonl" \
    --trending-out "$out/trending.jsonl" --dead-letter-out "$out/dlq.jsonl" \
    --state-dir "$out/state" --now 2026-11-26T00:00:00Z --progress 0 2>&1 | tail -1)
  echo "run $i: $line"
  rates+=("$(sed -E 's/.* ([0-9]+) rec\/s.*/\1/' <<<"$line")")
  rss+=("$(sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/' <<<"$line")")
  disk+=("$(du -sm "$out/state" | cut -f1)")
  c=$("$out/decode" "$input")
  echo "run $i: $c"
  ceil+=("$(sed -E 's/.* ([0-9]+) rec\/s.*/\1/' <<<"$c")")
done
r=$(printf '%s\n' "${rates[@]}" | median)
m=$(printf '%s\n' "${rss[@]}" | median)
d=$(printf '%s\n' "${disk[@]}" | median)
c=$(printf '%s\n' "${ceil[@]}" | median)
ratio=$(awk -v a="$r" -v b="$c" 'BEGIN {printf "%.3f", a/b}')
steal_pct=$(stolen "$total0" "$steal0")
figures=$(cat <<FIG
B1 events/s: $r (median of $RUNS; target >= 1000000)
B1 peak RSS: $m MiB (target <= 512)
B1 state on disk: $d MiB
B1 read+decode only (same file, same run): $c events/s; backfill/decode ratio $ratio
B1 host: $steal_pct% of the machine's CPU time stolen by its hypervisor during the runs
FIG
)
echo "$figures"
# Judged before the figures are appended: the append itself changes the tree.
dirty=$(git diff --quiet || echo ' (with local changes)')
{
  echo "## B1 backfill, $(date -u +%Y-%m-%d)"
  echo
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- commit: $(git rev-parse --short HEAD)$dirty"
  echo "- workload: $EVENTS events, $VIDEOS videos, $USERS users, 24 h, gen seed 1"
  echo
  echo '```'
  echo "$figures"
  echo '```'
  echo
} >>bench/RESULTS.md
