#!/usr/bin/env bash
# The reference of issue 9: `virality backfill` against bench/handloop (a
# twenty-line encoding/json + map loop) on the same generated file, in one
# run, alternating. Events/s of each is records / wall time of the whole
# process (start to exit, so backfill's final commit is included); CPU
# time (user + sys) and peak RSS from /usr/bin/time. Prints the medians
# and the ratio (target >= 2x). On a shared machine the wall times of
# separate runs do not compare: compare the ratios of one run.
#
#   bench/handloop.sh                        # 1,300,000 likes, 3 runs each
#   EVENTS=300000 RUNS=1 bench/handloop.sh   # a quick look
#   BEFORE=HEAD~1 bench/handloop.sh          # and that revision's backfill in the same
#                                            # runs, its outputs compared byte for byte
#   PROFILE=1 bench/handloop.sh              # then one profiled backfill: pprof -top -cum
#   CREATORS=0 bench/handloop.sh             # backfill without creator outputs (scores,
#                                            # trending lists and dead letters only, as B1):
#                                            # creator momentum is then not computed
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1300000}
VIDEOS=${VIDEOS:-$((EVENTS / 10))}
USERS=${USERS:-$((EVENTS / 2))}
RUNS=${RUNS:-3}
CREATORS=${CREATORS:-1}
out=bench/out
mkdir -p "$out"
go build -o "$out/virality" ./cmd/virality
go build -o "$out/handloop" ./bench/handloop
if [ -n "${BEFORE:-}" ]; then
  rm -rf "$out/before-src"
  mkdir -p "$out/before-src"
  git archive "$BEFORE" | tar -x -C "$out/before-src"
  (cd "$out/before-src" && go build -o ../virality-before ./cmd/virality)
fi
input="$out/ref-$EVENTS-$VIDEOS.jsonl"
if [ ! -f "$input" ]; then
  "$out/virality" gen --seed 1 --events "$EVENTS" --videos "$VIDEOS" --users "$USERS" \
    --duration 24h --out "$input.tmp" --truth-out "$out/ref-truth.jsonl"
  mv "$input.tmp" "$input"
fi
records=$(wc -l <"$input")

# backfill BIN NAME [FLAG...]: sets cmd to a backfill of the input with
# fresh state (outputs named NAME).
backfill() {
  local bin=$1 name=$2
  shift 2
  rm -rf "$out/ref-state-$name"
  cmd=("$bin" backfill --in "$input" --out "$out/ref-scores-$name.jsonl"
    --trending-out "$out/ref-trending-$name.jsonl" --dead-letter-out "$out/ref-dlq-$name.jsonl")
  [ "$CREATORS" = 0 ] || cmd+=(--creators-out "$out/ref-creators-$name.jsonl"
    --rising-creators-out "$out/ref-rising-$name.jsonl")
  cmd+=(--state-dir "$out/ref-state-$name" --now 2026-11-26T00:00:00Z --progress 0 "$@")
}

# timed NAME CMD...: runs CMD under /usr/bin/time; prints "events/s rss_mib cpu_s".
timed() {
  local name=$1
  shift
  /usr/bin/time -f '%e %M %U %S' -o "$out/ref-time" "$@" >"$out/ref-$name.log" 2>&1
  tail -1 "$out/ref-$name.log" >&2
  awk -v n="$records" '{printf "%.0f %.0f %.1f\n", n / $1, $2 / 1024, $3 + $4}' "$out/ref-time"
}

. bench/lib.sh # hostcpu, stolen
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
names=(backfill handloop)
[ -n "${BEFORE:-}" ] && names+=(before)
declare -A rate rss cpu rat
read -r total0 steal0 < <(hostcpu)
for i in $(seq "$RUNS"); do
  for name in "${names[@]}"; do
    case $name in
      backfill) backfill "$out/virality" now ;;
      before) backfill "$out/virality-before" before ;;
      handloop) cmd=("$out/handloop" "$input") ;;
    esac
    read -r r m c < <(timed "$name" "${cmd[@]}")
    echo "run $i: $name $r events/s, peak RSS $m MiB, CPU $c s"
    rate[$name]+="$r " rss[$name]+="$m " cpu[$name]+="$c "
    eval "r_$name=$r"
  done
  rat[backfill]+="$(ratio "$r_backfill" "$r_handloop") "
  [ -n "${BEFORE:-}" ] && rat[before]+="$(ratio "$r_before" "$r_handloop") "
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
echo "records: $records ($input), $RUNS runs; $(stolen "$total0" "$steal0")% of the machine's CPU time stolen by its hypervisor meanwhile"
for name in "${names[@]}"; do
  line="$name: $(med "${rate[$name]}") events/s, peak RSS $(med "${rss[$name]}") MiB, CPU $(med "${cpu[$name]}") s"
  [ "$name" != handloop ] && line+="; ratio to handloop $(med "${rat[$name]}") (target >= 2)"
  echo "$line (medians)"
done
if [ -n "${BEFORE:-}" ]; then
  outs=(scores trending dlq)
  [ "$CREATORS" = 0 ] || outs+=(creators rising)
  for f in "${outs[@]}"; do
    cmp "$out/ref-$f-before.jsonl" "$out/ref-$f-now.jsonl"
  done
  echo "outputs of $BEFORE and of this tree: byte-identical"
fi

if [ -n "${PROFILE:-}" ]; then
  backfill "$out/virality" now --cpuprofile "$out/ref-cpu.prof"
  "${cmd[@]}" 2>&1 | tail -1
  go tool pprof -top -cum "$out/virality" "$out/ref-cpu.prof" 2>/dev/null | head -45
fi
