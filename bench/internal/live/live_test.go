package live

import (
	"math"
	"testing"
)

// TestHostCPUShares: steal and busy are shares of all the time that
// passed; idle and iowait are neither.
func TestHostCPUShares(t *testing.T) {
	before := HostCPU{Total: 1000, Idle: 400, Steal: 50}
	after := HostCPU{Total: 1200, Idle: 450, Steal: 90}
	steal, busy := after.Shares(before)
	if math.Abs(steal-0.20) > 1e-9 || math.Abs(busy-0.55) > 1e-9 {
		t.Fatalf("steal %v busy %v, want 0.20 and 0.55", steal, busy)
	}
	if s, b := before.Shares(before); s != 0 || b != 0 {
		t.Fatalf("no time passed: steal %v busy %v, want 0 and 0", s, b)
	}
	now, err := ReadHostCPU()
	if err != nil {
		t.Skipf("no /proc/stat here: %v", err)
	}
	if now.Total <= 0 || now.Idle > now.Total || now.Steal > now.Total {
		t.Fatalf("implausible snapshot %+v", now)
	}
}
