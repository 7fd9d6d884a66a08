package events

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Strings that must not reach a terminal as they are, and some that may.
var (
	unprintable = []string{
		"inc\u202e1", "\u202atxt", "a\u2066b", "a\u2069", "\u200eid", "id\u200f", "a\u061cb", // bidi
		"a\u200bb", "a\u200cb", "a\u200db", "a\u2060b", "\ufeffa", "a\u00adb", "a\U000e0041", // invisible (Cf)
		"a\u2028b", "a\u2029b", // line and paragraph separators
		"a\u00a0b", "a\u3000b", // spaces other than U+0020
		"a\u3164b", "a\u115fb", "a\ufe0fb", "a\u034fb", // invisible although IsPrint
		"a\tb", "a\nb", "a\x1b[31mred", "a\x7fb", "a\u0085b", // controls
		"a\xffb", "\xe2\x80", // invalid UTF-8
	}
	printable = []string{"", "inc-4711-1", "a b", "Zürich", "ключ", "מפתח", "🔑", `quote " and \ backslash`}
)

func TestPrintable(t *testing.T) {
	for _, s := range unprintable {
		if Printable(s) {
			t.Errorf("Printable(%+q) = true", s)
		}
		q := QuoteIfNeeded(s)
		if !Printable(q) || !strings.HasPrefix(q, `"`) {
			t.Errorf("QuoteIfNeeded(%+q) = %+q, not quoted and printable", s, q)
		}
		if back, err := strconv.Unquote(q); utf8.ValidString(s) && (err != nil || back != s) {
			t.Errorf("QuoteIfNeeded(%+q) = %s, which unquotes to %+q (%v)", s, q, back, err)
		}
		if q := Quote(s); !Printable(q) {
			t.Errorf("Quote(%+q) = %+q, not printable", s, q)
		}
		if m := Sanitize(s); !Printable(m) || !strings.Contains(m, `\`) {
			t.Errorf("Sanitize(%+q) = %+q", s, m)
		}
	}
	for _, s := range printable {
		if !Printable(s) || QuoteIfNeeded(s) != s || Sanitize(s) != s {
			t.Errorf("%q: Printable %v, QuoteIfNeeded %q, Sanitize %q; want it as it is", s, Printable(s), QuoteIfNeeded(s), Sanitize(s))
		}
	}
	if got, want := Sanitize("name\u202eexe.txt\n"), `name\u202eexe.txt\n`; got != want {
		t.Errorf("Sanitize = %s, want %s", got, want)
	}
	if got, want := QuoteIfNeeded("x\u3164\U000e0100"), `"x\u3164\U000e0100"`; got != want {
		t.Errorf("QuoteIfNeeded = %s, want %s", got, want)
	}
}

// JSON output escapes what is not printable as \u escapes and still decodes
// to the same values.
func TestEscapeJSON(t *testing.T) {
	values := append(append([]string{}, unprintable...), printable...)
	doc, err := json.Marshal(map[string][]string{"v": values})
	if err != nil {
		t.Fatal(err)
	}
	got := EscapeJSON(doc)
	if !Printable(string(got)) {
		t.Errorf("EscapeJSON left characters that are not printable: %s", got)
	}
	var before, after map[string][]string
	if err := json.Unmarshal(doc, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &after); err != nil {
		t.Fatalf("EscapeJSON made invalid JSON: %v\n%s", err, got)
	}
	for i := range before["v"] {
		if before["v"][i] != after["v"][i] {
			t.Errorf("value %d: %+q became %+q", i, before["v"][i], after["v"][i])
		}
	}
	for _, want := range []string{`inc\u202e1`, `a\u200bb`, `a\u2028b`, `a\udb40\udc41`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("EscapeJSON output lacks %s", want)
		}
	}
	if clean := []byte(`{"a":"Zürich 🔑"}` + "\n"); &EscapeJSON(clean)[0] != &clean[0] {
		t.Error("EscapeJSON copied a document that needs nothing")
	}
}

func FuzzPrintable(f *testing.F) {
	for _, s := range append(append([]string{}, unprintable...), printable...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := QuoteIfNeeded(s)
		if !Printable(q) || !Printable(Quote(s)) || !Printable(Sanitize(s)) {
			t.Fatalf("%+q: QuoteIfNeeded %+q, Quote %+q, Sanitize %+q: one is not printable", s, q, Quote(s), Sanitize(s))
		}
		if Printable(s) != (q == s) {
			t.Fatalf("%+q: Printable %v but QuoteIfNeeded %+q", s, Printable(s), q)
		}
		if back, err := strconv.Unquote(quoteAll(s)); utf8.ValidString(s) && (err != nil || back != s) {
			t.Fatalf("quoteAll(%+q) unquotes to %+q, %v", s, back, err)
		}
		doc, _ := json.Marshal(s)
		esc := EscapeJSON(doc)
		var a, b string
		if err := json.Unmarshal(esc, &b); err != nil || json.Unmarshal(doc, &a) != nil || a != b || !Printable(string(esc)) {
			t.Fatalf("EscapeJSON(%s) = %s (%v): %+q, want %+q", doc, esc, err, b, a)
		}
	})
}
