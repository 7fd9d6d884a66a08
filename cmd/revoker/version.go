package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// userAgent names revoker and its version in every Kalshi request.
func userAgent() string { return "revoker/" + version }

func printVersion(w io.Writer) {
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
	fmt.Fprintf(w, "revoker %s\ncommit  %s\ngo      %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
