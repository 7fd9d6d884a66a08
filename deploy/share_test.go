package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shareSettingRE finds a rate share set in any shipped form: VAR=value (env files,
// shell, docs), VAR: value (a ConfigMap), "name: VAR" followed by "value:" (a
// container's env), and the flag --rate-share value or --rate-share=value.
var shareSettingRE = regexp.MustCompile(`REVOKER_RATE_SHARE["']?\s*[:=]\s*["']?([^"'\s,;:)}\]` + "`" + `]*)` +
	`|name:\s*["']?REVOKER_RATE_SHARE["']?\s*\n\s*value:\s*["']?([^"'\s]*)` +
	`|--rate-share[= ]["']?([^"'\s,\]` + "`" + `]*)`)

// TestShippedFilesLeaveTheShareAuto: no file of deploy/ fixes a replica's share of
// the account's budget. A fixed share is right for one replica count only: scaled
// up, the replicas together spend more than the account allows (2 pods at 0.5 each,
// scaled to 3, spend 1.5 times it), which auto, the default, never does.
func TestShippedFilesLeaveTheShareAuto(t *testing.T) {
	settings := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range shareSettingRE.FindAllStringSubmatch(string(data), -1) {
			settings++
			if v := m[1] + m[2] + m[3]; v != "auto" {
				t.Errorf("%s fixes the rate share: %q; want auto", path, strings.TrimSpace(m[0]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if settings == 0 {
		t.Error("no shipped file sets REVOKER_RATE_SHARE: the scan finds nothing (format changed?)")
	}
}

func TestShareSettingRE(t *testing.T) {
	for text, want := range map[string]string{
		"REVOKER_RATE_SHARE=1":                                 "1",
		`  REVOKER_RATE_SHARE: "0.5"`:                          "0.5",
		"- name: REVOKER_RATE_SHARE\n  value: \"0.25\"":        "0.25",
		"revoker run --rate-share 0.5":                         "0.5",
		`args: ["run", "--rate-share=0.3"]`:                    "0.3",
		"`REVOKER_RATE_SHARE=auto` (the default)":              "auto",
		`Environment="REVOKER_RATE_SHARE=0.2"`:                 "0.2",
		"with `--rate-share auto`":                             "auto",
		"REVOKER_RATE_SHARE = 0.5":                             "0.5",
		"- name: \"REVOKER_RATE_SHARE\"\n          value: '1'": "1",
	} {
		m := shareSettingRE.FindStringSubmatch(text)
		if m == nil || m[1]+m[2]+m[3] != want {
			t.Errorf("%q: got %q, want %q", text, m, want)
		}
	}
}
