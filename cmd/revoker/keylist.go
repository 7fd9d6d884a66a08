package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// maxKeyList bounds the key IDs one "revoke -f" reads.
const maxKeyList = 100_000

// keyIDProblem says why id cannot name a key, or "" when it can: kalshi's
// rule for IDs placed in a request path, and "-", which names standard input
// after -f and is never sent as a key ID.
func keyIDProblem(id string) string {
	switch {
	case id == "-":
		return `"-" is not a key ID (standard input is -f -)`
	case !kalshi.ValidKeyID(id):
		return events.Quote(id) + " is not a Kalshi API key ID (1 to 128 letters, digits, '-' or '_')"
	}
	return ""
}

// keyList returns the key IDs "revoke" acts on: the arguments, then the
// lines of cfg.KeyFile, each key once (by its canonical ID), in order. It
// reports every problem at once: an unreadable file and, unless --dry-run
// (whose plan refuses them), every ID that cannot be a key.
func keyList(cfg Config, args []string, stdin io.Reader) ([]string, []string) {
	type entry struct{ id, where string }
	var entries []entry
	for _, a := range args {
		entries = append(entries, entry{a, "argument"})
	}
	var problems []string
	if cfg.KeyFile != "" {
		lines, err := readKeyFile(cfg.KeyFile, stdin)
		if err != nil {
			problems = append(problems, err.Error())
		}
		name := cfg.KeyFile
		if name == "-" {
			name = "standard input"
		}
		for _, l := range lines {
			entries = append(entries, entry{l.id, fmt.Sprintf("%s line %d", name, l.n)})
		}
		if err == nil && len(lines) == 0 {
			problems = append(problems, name+" lists no key IDs")
		}
	}

	seen := make(map[string]bool, len(entries))
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		if why := keyIDProblem(e.id); why != "" && !cfg.DryRun {
			problems = append(problems, e.where+": "+why)
			continue
		}
		if c := events.CanonicalAPIKeyID(e.id); !seen[c] {
			seen[c] = true
			keys = append(keys, e.id)
		}
	}
	return keys, problems
}

type keyLine struct {
	id string
	n  int // line number
}

// readKeyFile reads key IDs one a line from path, or from stdin when path
// is "-". Blank lines are skipped, and so is everything from a "#" on.
func readKeyFile(path string, stdin io.Reader) ([]keyLine, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("-f %s: %w", path, pathErrorReason(err))
		}
		defer f.Close()
		r = f
	} else if r == nil {
		return nil, errors.New("-f -: no standard input")
	}
	var lines []keyLine
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if len(lines) == maxKeyList {
			return lines, fmt.Errorf("-f %s: more than %d key IDs; split the list", path, maxKeyList)
		}
		lines = append(lines, keyLine{line, n})
	}
	if err := sc.Err(); err != nil {
		return lines, fmt.Errorf("-f %s: %w", path, err)
	}
	return lines, nil
}
