#!/usr/bin/env bash
# Benchmark B4 (results in bench/RESULTS.md): the same number of events over 1x, 10x and 100x
# as many videos; events/s and peak RSS of backfill, and the slowdown at
# 100x (target <= 1.5x). Appends the figures to bench/RESULTS.md.
#
#   bench/b4.sh                       # 1,000,000 events over 10k, 100k, 1M videos
#   EVENTS=2000000 BASE=20000 bench/b4.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
BASE=${BASE:-10000}
out=bench/out
mkdir -p "$out"
go build -o "$out/virality" ./cmd/virality
. bench/lib.sh # hostcpu, stolen
lines=()
rates=()
read -r total0 steal0 < <(hostcpu)
for mult in 1 10 100; do
  videos=$((BASE * mult))
  input="$out/b4-$EVENTS-$videos.jsonl"
  [ -f "$input" ] || "$out/virality" gen --seed 1 --events "$EVENTS" --videos "$videos" \
    --users "$((EVENTS / 2))" --duration 24h --out "$input" 2>/dev/null
  rm -rf "$out/b4-state"
  line=$("$out/virality" backfill --in "$input" --out "$out/b4-scores.jsonl" \
    --trending-out "$out/b4-trending.jsonl" --dead-letter-out "$out/b4-dlq.jsonl" \
    --state-dir "$out/b4-state" --now 2026-11-26T00:00:00Z --progress 0 2>&1 | tail -1)
  rate=$(sed -E 's/.* ([0-9]+) rec\/s.*/\1/' <<<"$line")
  rss=$(sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/' <<<"$line")
  rates+=("$rate")
  lines+=("B4 ${mult}x videos ($videos): $rate events/s, peak RSS $rss MiB")
done
slow=$(awk -v a="${rates[0]}" -v b="${rates[2]}" 'BEGIN {printf "%.2f", a/b}')
lines+=("B4 slowdown at 100x videos: ${slow}x (target <= 1.5x)")
lines+=("B4 host: $(stolen "$total0" "$steal0")% of the machine's CPU time stolen by its hypervisor during the runs")
printf '%s\n' "${lines[@]}"
# Judged before the figures are appended: the append itself changes the tree.
dirty=$(git diff --quiet || echo ' (with local changes)')
{
  echo
  echo "## B4 scale of state, $(date -u +%Y-%m-%d)"
  echo
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- commit: $(git rev-parse --short HEAD)$dirty"
  echo "- workload: $EVENTS events, $((EVENTS / 2)) users, 24 h, gen seed 1; videos as below"
  echo
  echo '```'
  printf '%s\n' "${lines[@]}"
  echo '```'
} >>bench/RESULTS.md
