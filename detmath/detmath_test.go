package detmath

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// function is one function of the package beside math's, with the range
// of arguments the tests draw from and how many ulps apart the two may
// be: math's amd64 assembly Exp (and so Pow) is a different algorithm,
// and math's Go code fuses multiply-adds on arm64 or from GOAMD64=v3
// (which Lgamma's subtraction near its poles magnifies).
// The ranges leave out what math's amd64 assembly gets wrong, which
// TestWhereMathIsWrong covers.
type function struct {
	name    string
	f, math func(float64) float64
	lo, hi  float64
	ulps    int64
}

func lgamma(x float64) float64     { l, _ := Lgamma(x); return l }
func mathLgamma(x float64) float64 { l, _ := math.Lgamma(x); return l }

var functions = []function{
	{"Exp", Exp, math.Exp, -745, 709, 2},
	{"Exp2", Exp2, math.Exp2, -1075, 1024, 2},
	{"Log", Log, math.Log, 0x1p-1022, 1e300, 2},
	{"Log2", Log2, math.Log2, 0x1p-1022, 1e9, 2},
	{"Log10", Log10, math.Log10, 0x1p-1022, 1e9, 2},
	{"Pow(x,1.8)", func(x float64) float64 { return Pow(x, 1.8) }, func(x float64) float64 { return math.Pow(x, 1.8) }, 0, 1e6, 8},
	{"Pow(x,-2.5)", func(x float64) float64 { return Pow(x, -2.5) }, func(x float64) float64 { return math.Pow(x, -2.5) }, 0, 100, 8},
	{"Pow(2.5,y)", func(y float64) float64 { return Pow(2.5, y) }, func(y float64) float64 { return math.Pow(2.5, y) }, -700, 700, 8},
	{"Lgamma", lgamma, mathLgamma, -100, 1e6, 4},
	{"Sin", Sin, math.Sin, -10, 10, 2},
	{"Sin(large)", Sin, math.Sin, 1 << 29, 1 << 60, 2},
	{"Cos", Cos, math.Cos, -10, 10, 2},
}

// arguments returns n arguments of fn drawn the same way on every
// machine, and some around its ends.
func (fn function) arguments(n int) []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	xs := []float64{fn.lo, fn.hi, math.Nextafter(fn.lo, fn.hi), math.Nextafter(fn.hi, fn.lo)}
	for range n {
		xs = append(xs, fn.lo+float64((fn.hi-fn.lo)*r.Float64()))
	}
	return xs
}

func ulpsApart(a, b float64) int64 {
	if math.IsNaN(a) && math.IsNaN(b) {
		return 0
	}
	if math.Signbit(a) != math.Signbit(b) {
		if a == b { // +0 and -0
			return 0
		}
		return math.MaxInt64
	}
	d := int64(math.Float64bits(a)) - int64(math.Float64bits(b))
	return max(d, -d)
}

// specialDiffers reports whether got and want differ where either is a
// special value (NaN, an infinity or a zero), which must match to the bit.
func specialDiffers(got, want float64) bool {
	special := func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) || x == 0 }
	return ulpsApart(got, want) != 0 && (special(want) || special(got))
}

// TestSpecialCases: at math's special arguments each function returns
// what math's does, to the bit (NaN for NaN, the same infinities and
// signed zeros).
func TestSpecialCases(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	special := []float64{nan, inf, -inf, 0, math.Copysign(0, -1), 1, -1, 2, 0.5, -0.5, 3, -3, 1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64,
		1.0 / (1 << 28), -1.0 / (1 << 28), 1.0 / (1 << 71), 710, -746, 1024, -1075, 1 << 52, -(1 << 52), 1 << 53, 1 << 58, 0.25, 1.5, -2.5}
	for _, fn := range functions {
		for _, x := range special {
			if got, want := fn.f(x), fn.math(x); specialDiffers(got, want) {
				t.Errorf("%s(%v) = %v, math gives %v", fn.name, x, got, want)
			}
		}
	}
	for _, y := range special {
		for _, x := range special {
			got, want := Pow(x, y), math.Pow(x, y)
			if specialDiffers(got, want) {
				t.Errorf("Pow(%v, %v) = %v, math gives %v", x, y, got, want)
			}
		}
	}
	for _, x := range []float64{-inf, -3, -2, -1, math.Copysign(0, -1), 0, -(1 << 52), -0.5, -2.5} {
		_, got := Lgamma(x)
		if _, want := math.Lgamma(x); got != want {
			t.Errorf("Lgamma(%v) has sign %d, math's %d", x, got, want)
		}
	}
	for e := -1074; e <= 1023; e++ {
		if got := Log2(math.Ldexp(1, e)); got != float64(e) {
			t.Fatalf("Log2(2**%d) = %v, not exact", e, got)
		}
	}
}

// TestCloseToMath: on arguments across each function's range, each is
// within its ulps of math's (a mistyped constant or operator would be
// far off).
func TestCloseToMath(t *testing.T) {
	for _, fn := range functions {
		var apart, worst int64
		for _, x := range fn.arguments(200_000) {
			d := ulpsApart(fn.f(x), fn.math(x))
			if d > fn.ulps {
				t.Errorf("%s(%v) = %v, math gives %v: %d ulps apart", fn.name, x, fn.f(x), fn.math(x), d)
				break
			}
			if d > 0 {
				apart++
			}
			worst = max(worst, d)
		}
		t.Logf("%s: %d of 200,000 apart from math, at most %d ulps", fn.name, apart, worst)
	}
}

// TestWhereMathIsWrong: on amd64, math.Log of a subnormal number is far
// off (Go issue 56600: its assembly does not normalize them) and math.Exp
// overflows to +Inf from about 709.5, short of its true limit 709.78.
// These functions get both right on every machine.
func TestWhereMathIsWrong(t *testing.T) {
	for e := -1074; e < -1022; e++ {
		x := math.Ldexp(1, e)
		if got, want := Log(x), float64(e)*math.Ln2; ulpsApart(got, want) > 1 {
			t.Errorf("Log(2**%d) = %v, want %v", e, got, want)
		}
		if got, want := Log(3*x), float64(float64(e)*math.Ln2)+math.Log(3); e < -1023 && ulpsApart(got, want) > 2 {
			t.Errorf("Log(3 * 2**%d) = %v, want %v", e, got, want)
		}
	}
	for x := 709.0; x < 709.78; x += 0.01 {
		got, want := Exp(x), float64(Exp(x-1)*math.E)
		if math.IsInf(got, 0) || ulpsApart(got, want) > 4 {
			t.Errorf("Exp(%v) = %v, want about e·Exp(x-1) = %v", x, got, want)
		}
	}
}

// fingerprints hashes the bits of each function on its arguments: the
// same on every machine if the package keeps its promise. With std, it
// hashes math's instead.
func fingerprints(std bool) map[string]uint64 {
	out := map[string]uint64{}
	for _, fn := range functions {
		f := fn.f
		if std {
			f = fn.math
		}
		h := uint64(14695981039346656037) // FNV-1a
		for _, x := range fn.arguments(500_000) {
			h ^= math.Float64bits(f(x))
			h *= 1099511628211
		}
		out[fn.name] = h
	}
	return out
}

// TestHelperFingerprints is the other machine's half of
// TestSameBitsOnArm64: run there with DETMATH_PRINT_FINGERPRINTS=1, it
// prints the fingerprints of this package and of math; otherwise it does
// nothing.
func TestHelperFingerprints(t *testing.T) {
	if os.Getenv("DETMATH_PRINT_FINGERPRINTS") != "1" {
		return
	}
	for _, std := range []bool{false, true} {
		for name, h := range fingerprints(std) {
			fmt.Printf("fingerprint\t%v\t%s\t%016x\n", std, name, h)
		}
	}
}

// TestSameBitsOnArm64 runs this package's tests compiled for arm64 under
// QEMU's user-mode emulator (Debian's qemu-user-static), and compares the
// bits each function gives there with those it gives here, on 500,000
// arguments each. It also checks that math's functions give other bits
// there, so that the comparison is known to see the difference an
// architecture makes.
func TestSameBitsOnArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: compiles this package for arm64 and runs it emulated")
	}
	if runtime.GOARCH == "arm64" {
		t.Skip("already on arm64")
	}
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-aarch64-static is not installed: CI must install Debian's qemu-user-static (%v)", err)
		}
		t.Skipf("qemu-aarch64-static is not installed (Debian: apt-get install qemu-user-static): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "detmath.test")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c for arm64: %v\n%s", err, out)
	}
	run := exec.Command(qemu, bin, "-test.run", "^TestHelperFingerprints$")
	run.Env = append(os.Environ(), "DETMATH_PRINT_FINGERPRINTS=1")
	out, err := run.Output()
	if err != nil {
		t.Fatalf("the arm64 tests under %s: %v\n%s", qemu, err, out)
	}
	there := map[bool]map[string]uint64{false: {}, true: {}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 || f[0] != "fingerprint" {
			continue
		}
		if h, err := strconv.ParseUint(f[3], 16, 64); err == nil {
			there[f[1] == "true"][f[2]] = h
		}
	}
	ours := fingerprints(false)
	var names []string
	for name := range ours {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if h, ok := there[false][name]; !ok {
			t.Errorf("%s: the arm64 run printed no fingerprint:\n%s", name, out)
		} else if h != ours[name] {
			t.Errorf("%s gives other bits on arm64: fingerprint %016x there, %016x here", name, h, ours[name])
		}
	}
	differ := 0
	for name, h := range fingerprints(true) {
		if there[true][name] != h {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("math's functions gave the same bits on arm64 as here: the emulated run cannot have been arm64 code, or the arguments miss every difference")
	}
	if !t.Failed() {
		t.Logf("math's functions: %d of %d give other bits on arm64; this package's: none", differ, len(ours))
	}
}

var sink float64

// BenchmarkFunctions times each function against math's on the same
// arguments.
func BenchmarkFunctions(b *testing.B) {
	for _, fn := range functions {
		xs := fn.arguments(1 << 12)
		for _, impl := range []struct {
			name string
			f    func(float64) float64
		}{{"detmath", fn.f}, {"math", fn.math}} {
			b.Run(fn.name+"/"+impl.name, func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					sink += impl.f(xs[i&(1<<12-1)])
				}
			})
		}
	}
}
