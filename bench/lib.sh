# Shell functions the benchmark scripts share (sourced, not run).

# hostcpu prints the machine's CPU ticks so far and those stolen, "total
# steal", from /proc/stat (steal: ready to run while the hypervisor ran
# another guest; on a shared host a run's wall time follows it).
hostcpu() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9}' /proc/stat; }

# stolen TOTAL0 STEAL0 prints the percentage of the machine's CPU time
# stolen since hostcpu printed TOTAL0 STEAL0.
stolen() {
  local total steal
  read -r total steal < <(hostcpu)
  awk -v t=$((total - $1)) -v s=$((steal - $2)) 'BEGIN {printf "%.0f", (t > 0 ? 100 * s / t : 0)}'
}
