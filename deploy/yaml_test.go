package deploy_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// yamlToJSON converts each document of a YAML stream to JSON, for decoding into the
// test's structs the way kubectl does (sigs.k8s.io/yaml's YAMLToJSON, YAML 1.1
// scalars: 0400 is octal).
//
// The module has no YAML library, so this is a deliberately small, strict parser for
// the subset the deployment files use: block mappings and sequences, plain, single-
// and double-quoted scalars, literal and folded block scalars, flow sequences of
// scalars, {} and [], comments and "---". Anything else (anchors, aliases, tags,
// complex keys, multi-line plain scalars, tabs, duplicate keys, unquoted yes/no/on/off)
// is an error, so a file this accepts means the same to any YAML parser.
func yamlToJSON(data []byte) ([][]byte, error) {
	var out [][]byte
	var doc []string
	flush := func(first int) error {
		p := &yamlParser{lines: doc, first: first}
		v, ok, err := p.document()
		if err != nil || !ok {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}
	first := 1
	for i, line := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") {
		if t := stripComment(line); t == "---" || strings.HasPrefix(t, "--- ") {
			if err := flush(first); err != nil {
				return nil, err
			}
			doc, first = nil, i+2
			continue
		}
		doc = append(doc, line)
	}
	if err := flush(first); err != nil {
		return nil, err
	}
	return out, nil
}

type yamlParser struct {
	lines []string
	first int // line number of lines[0]
	pos   int
}

// line returns the significant line at or after pos: its indentation and its text
// without indentation and comment. ok is false at the end.
func (p *yamlParser) line() (indent int, text string, ok bool, err error) {
	for ; p.pos < len(p.lines); p.pos++ {
		raw := p.lines[p.pos]
		t := strings.TrimRight(stripComment(raw), " ")
		if strings.TrimSpace(t) == "" {
			continue
		}
		trimmed := strings.TrimLeft(t, " ")
		if strings.HasPrefix(trimmed, "\t") {
			return 0, "", false, p.errorf("tab in indentation")
		}
		return len(t) - len(trimmed), trimmed, true, nil
	}
	return 0, "", false, nil
}

func (p *yamlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("yaml line %d: %s", p.first+p.pos, fmt.Sprintf(format, args...))
}

func (p *yamlParser) document() (any, bool, error) {
	indent, _, ok, err := p.line()
	if err != nil || !ok {
		return nil, false, err
	}
	if indent != 0 {
		return nil, false, p.errorf("document does not start at column 1")
	}
	v, err := p.node(0)
	if err != nil {
		return nil, false, err
	}
	if _, _, more, err := p.line(); err != nil || more {
		return nil, false, p.errorf("unexpected content (bad indentation?)")
	}
	return v, true, nil
}

// node parses the block node starting at the current line, which is at indent.
func (p *yamlParser) node(indent int) (any, error) {
	_, text, _, err := p.line()
	if err != nil {
		return nil, err
	}
	if isSeqItem(text) {
		return p.sequence(indent)
	}
	if _, _, isKey, err := splitKey(text); err != nil {
		return nil, p.errorf("%v", err)
	} else if isKey {
		return p.mapping(indent)
	}
	p.pos++
	return p.scalar(text)
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func (p *yamlParser) sequence(indent int) (any, error) {
	out := []any{}
	for {
		in, text, ok, err := p.line()
		if err != nil {
			return nil, err
		}
		if !ok || in < indent || (in == indent && !isSeqItem(text)) {
			return out, nil
		}
		if in > indent {
			return nil, p.errorf("bad indentation in sequence")
		}
		rest := strings.TrimLeft(strings.TrimPrefix(text, "-"), " ")
		if rest == "" {
			p.pos++
			v, err := p.child(indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		// "- key: value" starts a mapping indented to where "key" is.
		itemIndent := indent + len(text) - len(rest)
		p.lines[p.pos] = strings.Repeat(" ", itemIndent) + rest
		v, err := p.node(itemIndent)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

// child parses the value of a key or "-" that ended its line: a more indented
// block, or nothing (null).
func (p *yamlParser) child(indent int) (any, error) {
	in, _, ok, err := p.line()
	if err != nil || !ok || in <= indent {
		return nil, err
	}
	return p.node(in)
}

func (p *yamlParser) mapping(indent int) (any, error) {
	out := map[string]any{}
	for {
		in, text, ok, err := p.line()
		if err != nil {
			return nil, err
		}
		if !ok || in < indent {
			return out, nil
		}
		if in > indent {
			return nil, p.errorf("bad indentation in mapping")
		}
		key, rest, isKey, err := splitKey(text)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		if !isKey {
			return out, nil // a sequence item ends this mapping (it belongs to a parent key)
		}
		if _, dup := out[key]; dup {
			return nil, p.errorf("duplicate key %q", key)
		}
		p.pos++
		var v any
		switch {
		case rest == "":
			if in2, t2, ok2, err := p.line(); err != nil {
				return nil, err
			} else if ok2 && in2 == indent && isSeqItem(t2) {
				v, err = p.sequence(indent) // "key:\n- item" at the key's indentation
				if err != nil {
					return nil, err
				}
			} else if v, err = p.child(indent); err != nil {
				return nil, err
			}
		case rest[0] == '|' || rest[0] == '>':
			if v, err = p.blockScalar(rest, indent); err != nil {
				return nil, err
			}
		default:
			if v, err = p.scalar(rest); err != nil {
				return nil, err
			}
			if in2, _, ok2, _ := p.line(); ok2 && in2 > indent {
				return nil, p.errorf("multi-line plain scalars are not supported: quote it or use a block scalar")
			}
		}
		out[key] = v
	}
}

var blockHeaderRE = regexp.MustCompile(`^[|>][-+]?$`)

// blockScalar reads a literal (|) or folded (>) scalar whose lines are indented
// beyond parent; "-" strips the final newline, "+" keeps trailing blank lines.
func (p *yamlParser) blockScalar(header string, parent int) (any, error) {
	if !blockHeaderRE.MatchString(header) {
		return nil, p.errorf("unsupported block scalar header %q", header)
	}
	var lines []string
	indent := -1
	for ; p.pos < len(p.lines); p.pos++ {
		raw := p.lines[p.pos]
		trimmed := strings.TrimLeft(raw, " ")
		if trimmed == "" {
			lines = append(lines, "")
			continue
		}
		in := len(raw) - len(trimmed)
		if in <= parent {
			break
		}
		if indent < 0 {
			indent = in
		}
		if in < indent {
			return nil, p.errorf("block scalar line less indented than its first line")
		}
		lines = append(lines, raw[indent:])
	}
	keep := strings.HasSuffix(header, "+")
	n := len(lines)
	for n > 0 && lines[n-1] == "" {
		n--
	}
	trailing := lines[n:]
	lines = lines[:n]
	var s string
	if header[0] == '|' {
		s = strings.Join(lines, "\n")
	} else {
		var b strings.Builder
		for i, l := range lines {
			switch {
			case i == 0:
			case l == "":
				b.WriteString("\n")
			case lines[i-1] == "": // the blank line gave the break
			case strings.HasPrefix(l, " ") || strings.HasPrefix(lines[i-1], " "):
				b.WriteString("\n")
			default:
				b.WriteString(" ")
			}
			b.WriteString(l)
		}
		s = b.String()
	}
	switch {
	case strings.HasSuffix(header, "-") || n == 0:
	case keep:
		s += "\n" + strings.Repeat("\n", len(trailing))
	default:
		s += "\n"
	}
	return s, nil
}

// splitKey splits "key: value" or "key:" outside quotes. isKey is false for text
// that is not a mapping entry.
func splitKey(text string) (key, rest string, isKey bool, err error) {
	if text[0] == '"' || text[0] == '\'' {
		end := closingQuote(text)
		if end < 0 {
			return "", "", false, fmt.Errorf("unterminated quoted string")
		}
		after := text[end+1:]
		if after != ":" && !strings.HasPrefix(after, ": ") {
			return "", "", false, nil
		}
		k, err := unquote(text[:end+1])
		return k, strings.TrimLeft(after[1:], " "), true, err
	}
	if text[0] == '?' || strings.HasPrefix(text, "- ") || text == "-" || text[0] == '[' || text[0] == '{' {
		return "", "", false, nil
	}
	i := strings.Index(text, ": ")
	if i < 0 {
		if !strings.HasSuffix(text, ":") {
			return "", "", false, nil
		}
		i = len(text) - 1
	}
	return text[:i], strings.TrimLeft(text[i+1:], " "), true, nil
}

var (
	intRE   = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)
	octRE   = regexp.MustCompile(`^0o?[0-7]+$`)
	hexRE   = regexp.MustCompile(`^0x[0-9a-fA-F]+$`)
	floatRE = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)
)

func (p *yamlParser) scalar(text string) (any, error) {
	switch text[0] {
	case '"', '\'':
		if closingQuote(text) != len(text)-1 {
			return nil, p.errorf("text after quoted string")
		}
		s, err := unquote(text)
		if err != nil {
			return nil, p.errorf("%v", err)
		}
		return s, nil
	case '[':
		return p.flowSequence(text)
	case '{':
		if text == "{}" {
			return map[string]any{}, nil
		}
		return nil, p.errorf("flow mappings are not supported")
	case '&', '*', '!', '%', '@', '`', '|', '>', '?', ']', '}', ',':
		return nil, p.errorf("unsupported scalar %q", text)
	}
	if strings.Contains(text, ": ") {
		return nil, p.errorf("plain scalar %q contains \": \": quote it", text)
	}
	switch text {
	case "~", "null", "Null", "NULL":
		return nil, nil
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF":
		return nil, p.errorf("%q is a boolean to some YAML parsers and a string to others: quote it or use true/false", text)
	}
	switch {
	case hexRE.MatchString(text):
		return strconv.ParseInt(text[2:], 16, 64)
	case octRE.MatchString(text) && text != "0":
		return strconv.ParseInt(strings.TrimPrefix(strings.TrimPrefix(text, "0o"), "0"), 8, 64)
	case intRE.MatchString(text):
		return strconv.ParseInt(text, 10, 64)
	case floatRE.MatchString(text):
		return strconv.ParseFloat(text, 64)
	}
	return text, nil
}

func (p *yamlParser) flowSequence(text string) (any, error) {
	if !strings.HasSuffix(text, "]") {
		return nil, p.errorf("flow sequence must end on its line")
	}
	inner := strings.TrimSpace(text[1 : len(text)-1])
	out := []any{}
	for inner != "" {
		end := len(inner)
		if inner[0] == '"' || inner[0] == '\'' {
			if end = closingQuote(inner) + 1; end <= 0 {
				return nil, p.errorf("unterminated quoted string")
			}
		} else if i := strings.IndexByte(inner, ','); i >= 0 {
			end = i
		}
		item := strings.TrimSpace(inner[:end])
		if item == "" || strings.ContainsAny(item, "[]{}") {
			return nil, p.errorf("unsupported flow sequence %q", text)
		}
		v, err := p.scalar(item)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		inner = strings.TrimSpace(inner[end:])
		if inner != "" {
			if inner[0] != ',' {
				return nil, p.errorf("expected , in %q", text)
			}
			inner = strings.TrimSpace(inner[1:])
		}
	}
	return out, nil
}

// closingQuote returns the index of the quote closing the string text starts with.
func closingQuote(text string) int {
	q := text[0]
	for i := 1; i < len(text); i++ {
		switch {
		case q == '"' && text[i] == '\\':
			i++
		case text[i] == q && q == '\'' && i+1 < len(text) && text[i+1] == '\'':
			i++
		case text[i] == q:
			return i
		}
	}
	return -1
}

func unquote(s string) (string, error) {
	if s[0] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	}
	return strconv.Unquote(s)
}

// stripComment removes a comment: # at the start or after a space, outside quotes.
func stripComment(line string) string {
	var q byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case q == 0 && (c == '"' || c == '\'') && (i == 0 || strings.ContainsRune(" [,:-", rune(line[i-1]))):
			q = c
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && c == '#' && (i == 0 || line[i-1] == ' '):
			return line[:i]
		}
	}
	return line
}

func TestYAMLToJSON(t *testing.T) {
	in := `# comment
a: 1 # trailing
b: "two # not a comment"
c: 'it''s'
d:
  - x
  - k: v
    k2: [1, "y", true]
  -
    deep: 0400
e:
- 0x1F
- null
f: |
  line one
    indented # kept
  line three
g: >-
  folded
  together

  paragraph
h: {}
i: 0.5
url: http://host:9464/metrics
---
# second document
second: true
---
`
	docs, err := yamlToJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"a":1,"b":"two # not a comment","c":"it's","d":["x",{"k":"v","k2":[1,"y",true]},{"deep":256}],"e":[31,null],"f":"line one\n  indented # kept\nline three\n","g":"folded together\nparagraph","h":{},"i":0.5,"url":"http://host:9464/metrics"}`,
		`{"second":true}`,
	}
	if len(docs) != len(want) {
		t.Fatalf("%d documents, want %d", len(docs), len(want))
	}
	for i := range want {
		var got, exp any
		if err := json.Unmarshal(docs[i], &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(want[i]), &exp); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("document %d:\n got %s\nwant %s", i, docs[i], want[i])
		}
	}

	for _, bad := range []string{
		"a: 1\na: 2",
		"a: &x 1",
		"a: *x",
		"a: !!str 1",
		"a: yes",
		"a: b: c",
		"a: {b: 1}",
		"a:\n\t- b",
		"a: one\n  two",
		"a:\n  - b\n c: d",
		"? a\n: b",
		`a: "open`,
	} {
		if _, err := yamlToJSON([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
