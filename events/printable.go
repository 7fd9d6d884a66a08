package events

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Printable reports whether s can reach a terminal as it is: valid UTF-8 of
// printable characters only (strconv.IsPrint: letters, marks, numbers,
// punctuation, symbols and the ASCII space) and none of the invisible ones
// IsPrint lets through. That leaves out every control character, every
// format character (Cf: the bidi controls U+202A-U+202E, U+2066-U+2069,
// U+200E, U+200F and U+061C, the zero-width U+200B-U+200D, U+2060, U+FEFF),
// the line and paragraph separators U+2028 and U+2029, and spaces other
// than U+0020. revoker prints text that came from a request or from Kalshi
// as it is only when it is Printable, quoted or escaped otherwise, so that a
// key name cannot reorder, hide or forge what the terminal shows.
func Printable(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !printableRune(r, size) {
			return false
		}
		i += size
	}
	return true
}

// printableRune is Printable for one rune decoded with size bytes.
func printableRune(r rune, size int) bool {
	return !(r == utf8.RuneError && size == 1) && strconv.IsPrint(r) && !invisible(r)
}

// invisible reports whether r shows nothing although strconv.IsPrint
// accepts it: the Hangul fillers, the combining grapheme joiner, the Khmer
// inherent vowels and the variation selectors.
func invisible(r rune) bool {
	switch {
	case r == '\u034f', r == '\u115f', r == '\u1160', r == '\u17b4', r == '\u17b5', r == '\u3164', r == '\uffa0':
		return true
	case '\ufe00' <= r && r <= '\ufe0f', '\U000e0100' <= r && r <= '\U000e01ef':
		return true
	}
	return false
}

// quoteAll quotes s as strconv.Quote does, also escaping the invisible
// runes strconv.Quote keeps, so that the quoted form is Printable.
func quoteAll(s string) string {
	q := strconv.Quote(s)
	if !strings.ContainsFunc(q, invisible) {
		return q
	}
	var b strings.Builder
	for _, r := range q {
		if invisible(r) {
			b.WriteString(escapeRune(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeRune is r as a Go escape: \n, \x1b, \u202e, \U000e0100.
func escapeRune(r rune) string {
	switch {
	case r < 0x80:
		q := strconv.QuoteRuneToASCII(r)
		return q[1 : len(q)-1]
	case r < 0x10000:
		return `\u` + leftPad(strconv.FormatInt(int64(r), 16), 4)
	}
	return `\U` + leftPad(strconv.FormatInt(int64(r), 16), 8)
}

func leftPad(s string, n int) string {
	if len(s) < n {
		return strings.Repeat("0", n-len(s)) + s
	}
	return s
}

// QuoteIfNeeded is s as it is when Printable, and quoted (in full, every
// character that is not printable escaped) otherwise: for a value in a line
// or a table cell.
func QuoteIfNeeded(s string) string {
	if Printable(s) {
		return s
	}
	return quoteAll(s)
}

// Sanitize is s with every character that is not printable written as its
// Go escape (\n, \x1b, \u202e), and nothing else changed: for a message,
// whose words should stay unquoted.
func Sanitize(s string) string {
	if Printable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x` + leftPad(strconv.FormatUint(uint64(s[i]), 16), 2))
		case r == '\\' || printableRune(r, size):
			b.WriteString(s[i : i+size])
		default:
			b.WriteString(escapeRune(r))
		}
		i += size
	}
	return b.String()
}

// EscapeJSON returns the JSON document doc with every character that is not
// printable written as a \u escape, so that a JSON value printed to a
// terminal cannot act on it either. encoding/json escapes control
// characters and U+2028/U+2029 only. doc is returned as it is when it needs
// nothing; an ASCII control outside a string (only in a document that is
// not JSON) is escaped too, except the whitespace JSON allows.
func EscapeJSON(doc []byte) []byte {
	clean := true
	for i := 0; i < len(doc); {
		c := doc[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c == 0x7f {
				clean = false
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(doc[i:])
		if !printableRune(r, size) {
			clean = false
			break
		}
		i += size
	}
	if clean {
		return doc
	}
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	out := make([]byte, 0, len(doc)+32)
	for i := 0; i < len(doc); {
		c := doc[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c == 0x7f {
				out = u(out, rune(c))
			} else {
				out = append(out, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(doc[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case printableRune(r, size):
			out = append(out, doc[i:i+size]...)
		case r >= 0x10000:
			hi, lo := utf16.EncodeRune(r)
			out = u(u(out, hi), lo)
		default:
			out = u(out, r)
		}
		i += size
	}
	return out
}

// Quote quotes s for a message, cut to 64 bytes (and marked "...") so that
// no field, however long, makes a long message. Every character that is not
// Printable is escaped.
func Quote(s string) string {
	const max = 64
	if len(s) <= max {
		return quoteAll(s)
	}
	return quoteAll(cut(s, max)) + "..."
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
