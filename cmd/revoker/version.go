package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// userAgent names revoker and its version in every Kalshi request.
func userAgent() string { return "revoker/" + version }

// buildInfo returns the version, the commit ("unknown" when not known,
// with " (modified)" for a build from a modified tree) and the Go version
// of this binary.
func buildInfo() (ver, rev, goVersion string) {
	rev, modified := commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if modified {
		rev += " (modified)"
	}
	return version, rev, runtime.Version()
}

func printVersion(w io.Writer) {
	ver, rev, goVersion := buildInfo()
	fmt.Fprintf(w, "revoker %s\ncommit  %s\ngo      %s %s/%s\n", ver, rev, goVersion, runtime.GOOS, runtime.GOARCH)
}

// buildInfoMetric is revoker_build_info{version,commit,go_version}, always 1.
func buildInfoMetric() prometheus.Collector {
	ver, rev, goVersion := buildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   "revoker",
		Name:        "build_info",
		Help:        "Always 1; the labels say which build of revoker runs.",
		ConstLabels: prometheus.Labels{"version": ver, "commit": rev, "go_version": goVersion},
	})
	g.Set(1)
	return g
}
