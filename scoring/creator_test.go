package scoring

import "testing"

func TestCreatorMomentum(t *testing.T) {
	const day = 24 * 60 * 60_000
	ts := int64(10 * day)
	at := func(likes5m, likes24h int64, first int64) (float64, float64) {
		return CreatorMomentum(&CreatorInput{TS: ts, FirstLike: first, Likes5m: likes5m, Likes24h: likes24h})
	}
	if m, b := at(0, 0, 0); m != 0 || b != 1.0/60 {
		t.Errorf("no likes: momentum %v, baseline %v (want 0 and the prior's 1/60)", m, b)
	}
	// A steady creator: 10 likes a minute for a day, 50 in the last 5 min.
	if m, b := at(50, 14_400, ts-day); m > 0.5 || b < 9.5 || b > 10.5 {
		t.Errorf("steady creator: momentum %v, baseline %v", m, b)
	}
	// The same creator at 5x its pace: clearly rising.
	steady, _ := at(50, 14_400, ts-day)
	rising, _ := at(250, 14_600, ts-day)
	if rising < 10 || rising <= steady {
		t.Errorf("rising creator: momentum %v (steady %v)", rising, steady)
	}
	// Shrinkage: three likes on a new creator are not a sensation.
	if m, _ := at(3, 3, ts-5*60_000); m <= 0 || m > 3 {
		t.Errorf("three likes on a new creator: momentum %v", m)
	}
	// More recent likes never lower momentum.
	prev := 0.0
	for n := int64(0); n <= 100; n += 5 {
		m, _ := at(n, 1_000+n, ts-day)
		if m < prev {
			t.Fatalf("momentum fell from %v to %v at %d recent likes", prev, m, n)
		}
		prev = m
	}
}
