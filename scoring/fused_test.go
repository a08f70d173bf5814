package scoring_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// fusedAt matches an arm64 fused multiply-add in the compiler's assembly
// listing (FMADDD, FNMSUBS, ...), with the source line it gives for it.
var fusedAt = regexp.MustCompile(`\((\S+\.go:\d+)\)\t(FN?M(?:ADD|SUB)[DS])\t`)

// TestNoFusedMultiplyAdd compiles for arm64 the packages that compute
// what the engine writes (the scores, rates and decisions of scoring and
// processor, and the detmath functions they call) and the generator whose
// files the tests and benchmarks read. arm64's compiler fuses x*y + z
// into one instruction that rounds once; the test fails on any it fuses. amd64 does the same from
// GOAMD64=v3. A fused product gives other bits than the same expression
// rounded twice, so a replay built for another machine would write other
// scores: an explicit float64 conversion of the product prevents it (see
// the package comment's "Bits across machines").
//
// The build cache replays the compiler's listing, so a run after the
// first costs a fraction of a second; the first compiles the packages
// and their dependencies for arm64 (about a minute on 2 cores).
func TestNoFusedMultiplyAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: compiles the engine for arm64")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		t.Skipf("no go command in GOROOT (%v): the listing needs the compiler", err)
	}
	const module = "github.com/viralityhq/virality"
	cmd := exec.Command(goTool, "build", "-o", os.DevNull, "-gcflags="+module+"/...=-S", module+"/scoring", module+"/processor", module+"/detmath", module+"/gen")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build for arm64: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`\tFMOVD\t`).Match(out) {
		t.Fatalf("the arm64 listing has no floating-point instruction at all: not the compiler's listing?\n%.2000s", out)
	}
	seen := map[string]bool{}
	for _, m := range fusedAt.FindAllSubmatch(out, -1) {
		at := string(m[1]) + " " + string(m[2])
		if !seen[at] {
			seen[at] = true
			t.Errorf("%s: a fused multiply-add; convert the product explicitly, float64(x*y)", at)
		}
	}
}
