package events

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// storedResults are results whose documents, as the previous version's hand
// encoder wrote them, are kept in testdata/stored: a result stored before
// must still parse, and the same result must encode to the same bytes.
func storedResults() map[string]Result {
	east := time.FixedZone("east", 5*3600+30*60)
	tricky := Result{
		RequestID: "id \"q\" \\ \x00\x01\x1f\x7f", APIKeyID: "\xff\xfe bad utf-8 \xc3", Outcome: AlreadyRevoked,
		Attempts: -1, Deliveries: 1 << 40, HTTPStatus: 404,
		Reason: "\b\f\n\r\t \u2028\u2029 <>& \U0001F600 \u00e9\u0301", RequestedBy: "\u0085\u200b", Source: "/",
		RequestedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		ReceivedAt:  time.Date(2026, 1, 2, 3, 4, 5, 600, east), CompletedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		DurationMS: -5, RevokedBy: "inc-1", RevokedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, east), Detail: "listed no more",
	}
	minimal := Result{RequestID: "x", Outcome: Failed, Error: &Error{Code: CodeMaxDeliveries}}
	leaked := revokedResult()
	leaked.LeakedKeyFingerprint = "sha256:" + strings.Repeat("ab", 32)
	scheduled := revokedResult()
	scheduled.NotBefore = time.Date(2026, 12, 24, 18, 0, 0, 0, east)
	sub := 63
	blast := revokedResult()
	blast.KeyName, blast.KeyScopes, blast.KeySubaccount = "bot <\"q\">\u2028", []string{"read", "write::trade", ""}, &sub
	blast.Containment = &Containment{OrdersCancelled: 10000}
	notAllowed := revokedResult()
	notAllowed.KeyScopes = []string{}
	notAllowed.Containment = &Containment{Error: &Error{Code: CodeCancelOrdersNotAllowed, Message: "\"off\" <x>"}}
	long := rejectedResult()
	long.Reason, long.KeyName = strings.Repeat("r", MaxTextLength), strings.Repeat("n", 3000)
	long.KeyScopes = []string{strings.Repeat("s", 3000), "write"}
	long.Containment = &Containment{Error: &Error{Code: CodeRetriesExhausted, Message: strings.Repeat("m", 3000)}}
	return map[string]Result{
		"revoked": revokedResult(), "rejected": rejectedResult(), "failed": failedResult(), "traced": tracedResult(),
		"tricky": tricky, "minimal": minimal, "leaked": leaked, "scheduled": scheduled, "blast": blast,
		"not-allowed": notAllowed, "shortened": long,
	}
}

// The documents of the previous version: MarshalEvent makes the same bytes,
// ParseResult reads them, and what it reads encodes to them again.
func TestStoredResults(t *testing.T) {
	for name, r := range storedResults() {
		t.Run(name, func(t *testing.T) {
			got, err := r.MarshalEvent()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "stored", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			stored = bytes.TrimSuffix(stored, []byte("\n"))
			if !bytes.Equal(got, stored) {
				t.Errorf("MarshalEvent() =\n%s\nstored by the previous version (%s):\n%s", got, path, stored)
			}
			parsed, err := ParseResult(stored)
			if err != nil {
				t.Fatalf("ParseResult(%s): %v", path, err)
			}
			again, err := parsed.MarshalEvent()
			if err != nil {
				t.Fatal(err)
			}
			// Invalid UTF-8 was stored as \ufffd and reads back as U+FFFD, which
			// encodes as itself: the tricky document reads back the same, not
			// byte for byte.
			if reparsed, err := ParseResult(again); name == "tricky" && (err != nil || !reflect.DeepEqual(reparsed, parsed)) {
				t.Errorf("ParseResult(MarshalEvent(ParseResult(stored))) = %+v, %v; want %+v", reparsed, err, parsed)
			} else if name != "tricky" && !bytes.Equal(again, stored) {
				t.Errorf("ParseResult then MarshalEvent =\n%s\nwant the stored document", again)
			}
		})
	}
}

func BenchmarkParseResult(b *testing.B) {
	doc, err := revokedResult().MarshalEvent()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseResult(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// resultFieldNames are the JSON names of the result's data, from the Result
// struct (embedded structs' fields included).
func resultFieldNames() []string {
	var names []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Result]()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.Anonymous && f.IsExported() && name != "-" && name != "" {
			names = append(names, name)
		}
	}
	return names
}

// docResultFields are the data fields the Results section of
// docs/contract.md names: its example document's data and each data.NAME.
func docResultFields(t *testing.T) []string {
	doc, err := os.ReadFile("../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Results\n")
	if !ok {
		t.Fatal("docs/contract.md has no Results section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, example, ok := strings.Cut(section, "```json\n")
	example, _, _ = strings.Cut(example, "```")
	var event struct{ Data map[string]any }
	if err := json.Unmarshal([]byte(example), &event); !ok || err != nil || event.Data == nil {
		t.Fatalf("docs/contract.md: the Results example is not a result document: %v", err)
	}
	var names []string
	for name := range event.Data {
		names = append(names, name)
	}
	for _, m := range regexp.MustCompile(`data\.([a-z_]+)`).FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// The result's field list is written in two places, the Result struct and
// the contract; each must name every field of the other.
func TestContractNamesEveryResultField(t *testing.T) {
	inStruct, inDoc := resultFieldNames(), docResultFields(t)
	for _, name := range inStruct {
		if !slices.Contains(inDoc, name) {
			t.Errorf("docs/contract.md, Results: data.%s is not named (in the example or as data.%s)", name, name)
		}
	}
	for _, name := range inDoc {
		if !slices.Contains(inStruct, name) {
			t.Errorf("docs/contract.md, Results: data.%s is no field of events.Result", name)
		}
	}
	if len(inStruct) < 20 {
		t.Errorf("Result has %d JSON names: %q; the reading of its tags is broken", len(inStruct), inStruct)
	}
}

// Every data field of a result with all fields set (but error) appears in its
// document under its JSON name, and nothing else: the tags are the document.
func TestResultFieldsAreTheDocument(t *testing.T) {
	r := Result{Outcome: Revoked}
	v := reflect.ValueOf(&r).Elem()
	for _, f := range reflect.VisibleFields(v.Type()) {
		if f.Anonymous || !f.IsExported() || f.Name == "Error" || f.Tag.Get("json") == "-" {
			continue
		}
		fv := v.FieldByIndex(f.Index)
		if !fv.IsZero() {
			continue
		}
		switch fill := reflect.New(f.Type).Elem(); {
		case f.Type == reflect.TypeFor[time.Time]():
			fv.Set(reflect.ValueOf(t0))
		case f.Type.Kind() == reflect.String:
			fv.SetString("x")
		case fill.CanInt():
			fv.SetInt(1)
		case fill.CanUint():
			fv.SetUint(1)
		case f.Type.Kind() == reflect.Slice:
			fv.Set(reflect.MakeSlice(f.Type, 0, 0))
		case f.Type.Kind() == reflect.Pointer:
			fv.Set(reflect.New(f.Type.Elem()))
		default:
			t.Fatalf("Result.%s: no value to fill a %s with; teach this test", f.Name, f.Type)
		}
	}
	b, err := r.MarshalEvent()
	if err != nil {
		t.Fatal(err)
	}
	var event struct{ Data map[string]json.RawMessage }
	if err := json.Unmarshal(b, &event); err != nil {
		t.Fatal(err)
	}
	names := resultFieldNames()
	for _, name := range names {
		if _, ok := event.Data[name]; !ok && name != "error" {
			t.Errorf("data.%s missing from %s", name, b)
		}
	}
	for name := range event.Data {
		if !slices.Contains(names, name) {
			t.Errorf("data.%s is not a Result field", name)
		}
	}
}

// appendString, which the binary mode's headers and Containment still use,
// escapes as encoding/json does with HTML escaping off.
func TestAppendStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "id \"q\" \\ \x00\x01\x1f\x7f", "\xff\xfe bad utf-8 \xc3",
		"\b\f\n\r\t \u2028\u2029 <>& \U0001F600 \u00e9\u0301", "\u0085\u200b"} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got, want := appendString(nil, s), bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, encoding/json: %s", s, got, want)
		}
	}
}
