package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository, seen from this package's tests.
const repoRoot = "../.."

// docFiles are the project's documents, relative to the repository: the
// README, ARCHITECTURE.md and docs/*.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "ARCHITECTURE.md"}
	more, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(more) == 0 {
		t.Fatal("docs/ holds no *.md")
	}
	for _, f := range more {
		rel, _ := filepath.Rel(repoRoot, f)
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// Every relative link and #anchor in the README, ARCHITECTURE.md and docs/
// leads somewhere: the file exists and, for a Markdown file, has a heading
// with that anchor.
func TestDocLinks(t *testing.T) {
	t.Parallel()
	for _, problem := range checkLinks(repoRoot, docFiles(t)) {
		t.Error(problem)
	}
}

// The checker itself finds what it must: a missing file, a missing anchor in
// another file and in the same one, "above" and "below" pointing the wrong
// way; and passes what resolves, GitHub's anchor rules included.
func TestCheckLinksFindsBrokenLinks(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, text string) {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "# Top\n\n## Incident runbook\n\nSee [ops](docs/ops.md#the-consoles-plan-v2), [up](#incident-runbook),\n"+
		"[dup](docs/ops.md#same-1), [below](#later), [dir](docs/), [web](https://example.com/x#y), `[code](nowhere.md)`.\n"+
		"Broken: [gone](docs/gone.md), [anchor](docs/ops.md#no-such-heading), [here](#nowhere), [the table above](#later).\n"+
		"```sh\necho [block](nowhere.md)\n```\n## Later\n\n[the top, above](#top), [later, below](#top)\n")
	write("docs/ops.md", "# Ops\n\n## The console's plan (v2)\n\n## Same\n\n## Same\n\n[back](../README.md#top)\n")
	got := checkLinks(root, []string{"README.md", "docs/ops.md"})
	want := []string{
		`README.md: link "docs/gone.md": no such file`,
		`README.md: link "docs/ops.md#no-such-heading": docs/ops.md has no heading with that anchor`,
		`README.md: link "#nowhere": README.md has no heading with that anchor`,
		`README.md: link "#later" says "the table above" but points the other way`,
		`README.md: link "#top" says "later, below" but points the other way`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("checkLinks found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var (
	fenceRE    = regexp.MustCompile("(?ms)^[ \t]*```.*?^[ \t]*```[ \t]*$")
	codeSpanRE = regexp.MustCompile("`[^`\n]*`")
	linkRE     = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)
	headingRE  = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$`)
)

// blank replaces each byte of what re matches in text with a space, keeping
// newlines, so that byte offsets still compare.
func blank(re *regexp.Regexp, text string) string {
	return re.ReplaceAllStringFunc(text, func(s string) string {
		b := []byte(s)
		for i := range b {
			if b[i] != '\n' {
				b[i] = ' '
			}
		}
		return string(b)
	})
}

// heading is a Markdown heading's anchor and where it starts.
type heading struct {
	anchor string
	at     int
}

// checkLinks returns a line for every relative link of files (paths
// relative to root) that does not resolve, and for every link called
// "above" or "below" to a heading of its own file on the other side.
func checkLinks(root string, files []string) []string {
	var problems []string
	headingsOf := map[string][]heading{}
	headings := func(file string) ([]heading, error) {
		if h, ok := headingsOf[file]; ok {
			return h, nil
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			return nil, err
		}
		headingsOf[file] = headingAnchors(string(data))
		return headingsOf[file], nil
	}
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		// Code blocks and spans hold examples, not links.
		text := blank(codeSpanRE, blank(fenceRE, string(data)))
		for _, m := range linkRE.FindAllStringSubmatchIndex(text, -1) {
			words, target := text[m[2]:m[3]], text[m[4]:m[5]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.ToSlash(filepath.Join(filepath.Dir(file), path))
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest))); err != nil {
					problems = append(problems, fmt.Sprintf("%s: link %q: no such file", file, target))
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			list, err := headings(dest)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: link %q: %v", file, target, err))
				continue
			}
			i := slices.IndexFunc(list, func(h heading) bool { return h.anchor == anchor })
			switch {
			case i < 0:
				problems = append(problems, fmt.Sprintf("%s: link %q: %s has no heading with that anchor", file, target, dest))
			case dest != file:
			case strings.Contains(words, "above") && list[i].at > m[0], strings.Contains(words, "below") && list[i].at < m[0]:
				problems = append(problems, fmt.Sprintf("%s: link %q says %q but points the other way", file, target, words))
			}
		}
	}
	return problems
}

// headingAnchors returns the headings of a Markdown text with the anchors
// GitHub gives them: lower case, spaces to '-', punctuation dropped, and -1,
// -2, ... on repeats.
func headingAnchors(text string) []heading {
	var list []heading
	seen := map[string]int{}
	for _, m := range headingRE.FindAllStringSubmatchIndex(blank(fenceRE, text), -1) {
		a := slug(text[m[2]:m[3]])
		if n := seen[a]; n > 0 {
			list = append(list, heading{fmt.Sprintf("%s-%d", a, n), m[0]})
		} else {
			list = append(list, heading{a, m[0]})
		}
		seen[a]++
	}
	return list
}

var inlineLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading's text.
func slug(heading string) string {
	heading = inlineLinkRE.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The README is for the incident: short, with the install line and the
// runbook in its first 150 lines, and the test command CI runs.
func TestReadmeForTheIncident(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 300 {
		t.Errorf("README.md has %d lines; at most 300 (the reference belongs in docs/)", len(lines))
	}
	first := strings.Join(lines[:min(150, len(lines))], "\n") + "\n"
	for _, want := range []string{"\ngo install github.com/revoker/revoker/cmd/revoker@", "\n## Incident runbook\n"} {
		if !strings.Contains(first, want) {
			t.Errorf("the first 150 lines of README.md lack %q", strings.TrimSpace(want))
		}
	}
	ci, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	// .ci/run's last go test line is "the README's test command".
	var testCmd string
	for _, line := range strings.Split(string(ci), "\n") {
		if strings.HasPrefix(line, "go test ") {
			testCmd = line
		}
	}
	if testCmd == "" {
		t.Fatal(".ci/run runs no go test")
	}
	if !strings.Contains(string(data), "\n"+testCmd+"\n") {
		t.Errorf("README.md does not give the test command CI runs, %q, on a line of its own", testCmd)
	}
}
