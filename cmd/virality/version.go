package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/viralityhq/virality/metrics"
)

// Set at link time to name a release, or the revision of a build made
// without VCS information (from a source archive):
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.revision=$(git rev-parse HEAD)" ./cmd/virality
//
// Empty, they come from the build information Go stamps into the binary.
var version, revision string

func init() {
	register("version", "print the version, VCS revision and Go version of this binary", runVersion)
	metrics.SetBuildInfo(currentBuild().metricLabels())
}

// buildVersion is what `virality version` prints and what labels the
// virality_build_info gauge.
type buildVersion struct {
	Version   string `json:"version"`            // -X main.version, else the main module's version, else "(devel)"
	Revision  string `json:"revision"`           // VCS revision, "-modified" appended for a dirty tree; "unknown" if not stamped
	Time      string `json:"vcs_time,omitempty"` // commit time of the revision
	GoVersion string `json:"goversion"`
	Platform  string `json:"platform"` // GOOS/GOARCH
	deps      []*debug.Module
}

func currentBuild() buildVersion {
	bi, _ := debug.ReadBuildInfo() // nil without build information
	return buildFrom(bi, version, revision)
}

// buildFrom reads bi (nil when the binary has no build information);
// non-empty versionOverride and revisionOverride win over it.
func buildFrom(bi *debug.BuildInfo, versionOverride, revisionOverride string) buildVersion {
	b := buildVersion{
		Version:   "(devel)",
		Revision:  "unknown",
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		var rev string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				b.Time = s.Value
			}
		}
		if rev != "" {
			if modified {
				rev += "-modified"
			}
			b.Revision = rev
		}
		b.deps = bi.Deps
	}
	if versionOverride != "" {
		b.Version = versionOverride
	}
	if revisionOverride != "" {
		b.Revision = revisionOverride
	}
	return b
}

func (b buildVersion) metricLabels() metrics.BuildInfo {
	return metrics.BuildInfo{Version: b.Version, GoVersion: b.GoVersion, Revision: b.Revision}
}

func runVersion(ctx context.Context, args []string) error {
	fs := newFlagSet("version", "version [--short | --json] [--deps]\n\n"+
		"Prints the version of this binary, the VCS revision it was built from (\"-modified\" when\n"+
		"the tree had uncommitted changes) and the Go version, as virality_build_info labels them.\n"+
		"The version is the one given at link time (-ldflags \"-X main.version=v1.4.0\"), else the\n"+
		"module version Go stamped, else (devel).")
	short := fs.Bool("short", false, "print only the version")
	asJSON := fs.Bool("json", false, "print one JSON object (version, revision, vcs_time, goversion, platform, and deps with --deps)")
	deps := fs.Bool("deps", false, "also list the modules compiled in, with their versions")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: version takes only flags (see --help)", fs.Arg(0))
	}
	if *short && *asJSON {
		return usagef("--short and --json: give one")
	}
	b := currentBuild()
	w := os.Stdout
	switch {
	case *asJSON:
		type dep struct {
			Path    string `json:"path"`
			Version string `json:"version"`
		}
		out := struct {
			buildVersion
			Deps []dep `json:"deps,omitempty"`
		}{buildVersion: b}
		if *deps {
			for _, d := range b.deps {
				path, v := d.Path, d.Version
				if d.Replace != nil {
					path, v = d.Replace.Path, d.Replace.Version
				}
				out.Deps = append(out.Deps, dep{path, v})
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case *short:
		_, err := fmt.Fprintln(w, b.Version)
		return err
	}
	fmt.Fprintf(w, "virality  %s\nrevision  %s\n", b.Version, b.Revision)
	if b.Time != "" {
		fmt.Fprintf(w, "committed %s\n", b.Time)
	}
	fmt.Fprintf(w, "go        %s %s\n", b.GoVersion, b.Platform)
	if *deps {
		for _, d := range b.deps {
			if d.Replace != nil {
				fmt.Fprintf(w, "dep       %s %s => %s %s\n", d.Path, d.Version, d.Replace.Path, d.Replace.Version)
				continue
			}
			fmt.Fprintf(w, "dep       %s %s\n", d.Path, d.Version)
		}
	}
	return nil
}
