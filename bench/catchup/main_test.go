package main

import "testing"

func TestBudgetOf(t *testing.T) {
	for _, tc := range []struct {
		name, args string
		want       int64
		fails      bool
	}{
		{name: "default", args: "", want: 512 << 20},
		{name: "other flags", args: "--workers 2", want: 512 << 20},
		{name: "off", args: "--memory-budget 0", want: 0},
		{name: "with equals", args: "-memory-budget=1GiB", want: 1 << 30},
		{name: "MiB", args: "--workers 2 --memory-budget 256MiB", want: 256 << 20},
		{name: "bare number", args: "--memory-budget 512", fails: true},
		{name: "no value", args: "--memory-budget", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := budgetOf(tc.args)
			if tc.fails {
				if err == nil {
					t.Fatalf("budgetOf(%q) = %d, want an error", tc.args, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("budgetOf(%q) = %d, %v; want %d", tc.args, got, err, tc.want)
			}
		})
	}
}

func TestStateKind(t *testing.T) {
	key := func(kind byte) []byte { return append([]byte{'P', 0, 0, 0, 3, kind}, "id"...) }
	for _, tc := range []struct {
		key, value []byte
		want       string
	}{
		{key('h'), []byte{10, 1}, "h"},
		{key('h'), nil, "h deleted"},
		{key('v'), []byte{}, "v"},
		{[]byte("\x00format"), []byte{10}, "other"},
		{[]byte("P\x00\x00\x00"), nil, "other deleted"},
	} {
		if got := stateKind(tc.key, tc.value); got != tc.want {
			t.Errorf("stateKind(%q, %v) = %q, want %q", tc.key, tc.value, got, tc.want)
		}
	}
}
