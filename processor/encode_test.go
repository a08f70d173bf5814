package processor

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAppendFloat checks appendFloat against strconv's 'g' with 10
// digits, which it stands for, on values of every kind the outputs carry
// and on those at the edges of its fast path: powers of ten and their
// neighbours, values that round up to one, halves at the tenth digit.
func TestAppendFloat(t *testing.T) {
	fast := 0
	check := func(f float64) {
		t.Helper()
		want := "0"
		if f != 0 && !math.IsNaN(f) && !math.IsInf(f, 0) {
			want = strconv.FormatFloat(f, 'g', 10, 64)
		}
		if got := string(appendFloat([]byte("x"), f)); got != "x"+want {
			t.Fatalf("appendFloat(%v (%b)) = %q, strconv %q", f, math.Float64bits(f), got[1:], want)
		}
		if _, ok := appendFixed10(nil, f); ok {
			fast++
		}
	}
	both := func(f float64) {
		t.Helper()
		for _, g := range []float64{f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1))} {
			check(g)
			check(-g)
		}
	}
	for _, f := range []float64{0, math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64,
		1234567890.5, 123456789.05, 0.00012345678905, 9.9999999995, 9999999999.5, 9999999999.4, 0.99999999995} {
		both(f)
	}
	for e := -8; e <= 12; e++ {
		p := math.Pow(10, float64(e))
		both(p)
		for _, m := range []float64{0.5, 0.99999999995, 0.999999999949, 0.999999999951, 1.0000000005, 1.00000000049, 5, 9.9999999995} {
			both(p * m)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		// Log-uniform over the range the outputs use and beyond it.
		both(math.Pow(10, r.Float64()*18-7))
		// Decimals of few digits, as rates and counts divided are.
		both(float64(r.IntN(100_000_000)) / math.Pow(10, float64(r.IntN(12))))
		// Halves at the tenth significant digit and their neighbours.
		both((float64(r.Int64N(9_000_000_000)+1_000_000_000) + 0.5) / math.Pow(10, float64(r.IntN(14))))
		// Any bits.
		check(math.Float64frombits(r.Uint64()))
	}
	if fast < 500_000 {
		t.Fatalf("the fast path formatted %d values, want most of them", fast)
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	vals := []float64{0.5171875, 123.456789012, 3.3333333333333335, 0.000241, 18.75, 41702.25}
	var buf []byte
	b.Run("appendFloat", func(b *testing.B) {
		for i := range b.N {
			buf = appendFloat(buf[:0], vals[i%len(vals)])
		}
	})
	b.Run("strconv", func(b *testing.B) {
		for i := range b.N {
			buf = strconv.AppendFloat(buf[:0], vals[i%len(vals)], 'g', 10, 64)
		}
	})
}
