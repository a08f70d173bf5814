package main

import "testing"

func TestBudgetOf(t *testing.T) {
	for _, tc := range []struct {
		name, args string
		want       int64
		fails      bool
	}{
		{name: "default", args: "", want: 1 << 30},
		{name: "other flags", args: "--workers 2", want: 1 << 30},
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
