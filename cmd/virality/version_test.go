package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viralityhq/virality/metrics"
)

func TestBuildFrom(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "virality", Version: "v0.0.0-20261126060000-0123456789ab+dirty"},
		Deps:      []*debug.Module{{Path: "github.com/segmentio/kafka-go", Version: "v0.4.51"}},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-26T06:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name          string
		bi            *debug.BuildInfo
		ver, rev      string
		wantVersion   string
		wantRevision  string
		wantGoVersion string
	}{
		{"stamped", bi, "", "", "v0.0.0-20261126060000-0123456789ab+dirty",
			"0123456789abcdef0123456789abcdef01234567-modified", "go1.26.8"},
		{"link-time version", bi, "v1.4.0", "", "v1.4.0",
			"0123456789abcdef0123456789abcdef01234567-modified", "go1.26.8"},
		{"link-time revision", bi, "v1.4.0", "feedface", "v1.4.0", "feedface", "go1.26.8"},
		{"no VCS", &debug.BuildInfo{Main: debug.Module{Path: "virality", Version: "(devel)"}}, "", "",
			"(devel)", "unknown", runtime.Version()},
		{"no build information", nil, "", "", "(devel)", "unknown", runtime.Version()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildFrom(tc.bi, tc.ver, tc.rev)
			if b.Version != tc.wantVersion || b.Revision != tc.wantRevision || b.GoVersion != tc.wantGoVersion {
				t.Errorf("got version %q revision %q go %q; want %q %q %q",
					b.Version, b.Revision, b.GoVersion, tc.wantVersion, tc.wantRevision, tc.wantGoVersion)
			}
			if b.Platform != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("platform %q", b.Platform)
			}
		})
	}
}

// TestVersionCommand: the three forms of `virality version`.
func TestVersionCommand(t *testing.T) {
	want := currentBuild()
	out, err := child(context.Background(), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, w := range []string{"virality  " + want.Version + "\n", "revision  " + want.Revision + "\n", runtime.Version()} {
		if !strings.Contains(s, w) {
			t.Errorf("version output lacks %q:\n%s", w, s)
		}
	}

	out, err = child(context.Background(), "version", "--short").Output()
	if err != nil || string(out) != want.Version+"\n" {
		t.Errorf("version --short = %q, %v; want %q", out, err, want.Version+"\n")
	}

	out, err = child(context.Background(), "version", "--json", "--deps").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version, Revision, GoVersion, Platform string
		Deps                                   []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got.Version != want.Version || got.Revision != want.Revision || got.GoVersion != runtime.Version() || got.Platform == "" {
		t.Errorf("version --json = %+v, want %+v", got, want)
	}
	found := false
	for _, d := range got.Deps {
		found = found || d.Path == "github.com/prometheus/client_golang"
	}
	if !found {
		t.Errorf("version --json --deps lists no github.com/prometheus/client_golang:\n%s", out)
	}
}

// TestBuildInfoMetric: the collectors of the service carry the version
// that `virality version` prints.
func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	b := currentBuild()
	want := fmt.Sprintf(`
# HELP virality_build_info Always 1; the labels say which build is running.
# TYPE virality_build_info gauge
virality_build_info{goversion=%q,revision=%q,version=%q} 1
`, b.GoVersion, b.Revision, b.Version)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "virality_build_info"); err != nil {
		t.Fatal(err)
	}
}

// TestVersionLinkTime: a binary built with -ldflags -X main.version
// reports that version and, built with VCS stamping in a git work tree,
// the revision git reports.
func TestVersionLinkTime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	vcs := err == nil // git installed and this is a work tree it trusts
	if top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
		// The go command stamps a revision only where .git is a directory,
		// not in a linked work tree (git worktree add), where it is a file.
		if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
			vcs = false
		}
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "virality")
	build := exec.Command(gobin, "build", "-buildvcs="+strconv.FormatBool(vcs), "-o", bin,
		"-ldflags", "-X main.version=v9.8.7-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Version, Revision string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got.Version != "v9.8.7-test" {
		t.Errorf("version %q, want v9.8.7-test", got.Version)
	}
	if !vcs {
		t.Logf("no git work tree: revision %q not checked", got.Revision)
		return
	}
	rev := strings.TrimSpace(string(head))
	if got.Revision != rev && got.Revision != rev+"-modified" {
		t.Errorf("revision %q, want %s (git rev-parse HEAD), with -modified if the tree is dirty", got.Revision, rev)
	}
}
