package metrics

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// exported returns the names of the virality_ metrics a service exports
// once every partition-labelled series exists.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.AddIn(0, 1)
	m.AddApplied(0, 1)
	m.SetLag(0, 1)
	m.SetWatermark(0, 1)
	m.SetEventTimeLag(0, time.Second)
	m.AddLostToRetention(0, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), Namespace+"_") {
			names[mf.GetName()] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bvirality_[a-z0-9_]*[a-z0-9]`)

// TestDeployUsesExportedNames: every virality_ metric that the alert rules
// and the dashboard query, and the operations guide names, is one the
// service exports, so that renaming a metric breaks this test rather than
// an alert.
func TestDeployUsesExportedNames(t *testing.T) {
	names := exported(t)
	for _, path := range []string{
		"../deploy/prometheus/virality-rules.yml",
		"../deploy/prometheus/virality-rules.test.yml",
		"../deploy/grafana/virality.json",
		"../docs/operations.md",
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range metricName.FindAllString(string(b), -1) {
			used[n] = true
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if s, ok := strings.CutSuffix(n, suffix); ok && names[s] {
					base = s
				}
			}
			if !names[base] {
				t.Errorf("%s uses %s, which the service does not export", path, n)
			}
		}
		if len(used) < 5 {
			t.Errorf("%s uses only %v", path, slices.Sorted(maps.Keys(used)))
		}
	}
}

// TestOperationsDocumentsEveryMetric: docs/operations.md describes every
// virality_ metric the service exports.
func TestOperationsDocumentsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range slices.Sorted(maps.Keys(exported(t))) {
		if !strings.Contains(string(b), "`"+n+"`") {
			t.Errorf("docs/operations.md does not describe %s", n)
		}
	}
}
