package events

// The JSON reader of requests: readObject reduces a body or a data object to the keys
// the decoder knows, and stringValue, kind and isNull read their values.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Keys the decoder looks at, at the top level and inside data.
const (
	kID = iota
	kAPIKeyID
	kReason
	kRequestedBy
	kSource
	kRequestedAt
	kLeakedPrivateKey
	kCancelOrders
	kNotBefore
	kSpecVersion
	kType
	kData
	kDataBase64
	kDataContentType
	kTime
	nKeys
)

var keyNames = [nKeys]string{
	kID:               "id",
	kAPIKeyID:         "api_key_id",
	kReason:           "reason",
	kRequestedBy:      "requested_by",
	kSource:           "source",
	kRequestedAt:      "requested_at",
	kLeakedPrivateKey: "leaked_private_key",
	kCancelOrders:     "cancel_orders",
	kNotBefore:        "not_before",
	kSpecVersion:      "specversion",
	kType:             "type",
	kData:             "data",
	kDataBase64:       "data_base64",
	kDataContentType:  "datacontenttype",
	kTime:             "time",
}

func keyIndex(name string) int {
	for i, k := range keyNames {
		if k == name {
			return i
		}
	}
	return -1
}

// object is a JSON object reduced to the keys the decoder knows.
type object struct {
	raw [nKeys]json.RawMessage // the value of each known key, nil when absent
	dup []string               // known keys that appeared more than once
}

// readObject reads b, which must be exactly one JSON object. what names b in problems.
func readObject(b []byte, what string) (*object, string) {
	// Valid JSON, the usual case, is walked in place: no allocation per
	// key or value. Anything else goes through the decoder, which words the
	// problem. Measured as deployed (Ed25519, c16), the decoder alone costs
	// 70 allocations and about 50 µs of CPU more per request.
	if !json.Valid(b) {
		return readObjectDecoder(b, what)
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return readObjectDecoder(b, what)
	}
	obj := new(object)
	for i = skipSpace(b, i+1); b[i] == '"'; {
		keyEnd := skipString(b, i)
		var k int
		if rawKey := b[i+1 : keyEnd-1]; bytes.IndexByte(rawKey, '\\') < 0 {
			k = keyIndexBytes(rawKey)
		} else {
			var key string
			_ = json.Unmarshal(b[i:keyEnd], &key) // valid: checked above
			k = keyIndex(key)
		}
		i = skipSpace(b, skipSpace(b, keyEnd)+1) // past the colon
		end := skipValue(b, i)
		if k >= 0 {
			if obj.raw[k] != nil {
				obj.dup = append(obj.dup, keyNames[k])
			}
			obj.raw[k] = json.RawMessage(b[i:end:end])
		}
		if i = skipSpace(b, end); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return obj, ""
}

func keyIndexBytes(name []byte) int {
	for i, k := range keyNames {
		if string(name) == k {
			return i
		}
	}
	return -1
}

// skipSpace, skipString and skipValue walk JSON that json.Valid accepted.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// readObjectDecoder is readObject with encoding/json's decoder, for input
// that is not a valid JSON object.
func readObjectDecoder(b []byte, what string) (*object, string) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, what + " is not valid JSON: " + jsonProblem(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Sprintf("%s must be a JSON object, not %s", what, tokenKind(tok))
	}
	obj := new(object)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, what + " is not valid JSON: " + jsonProblem(err)
		}
		key, _ := tok.(string) // the decoder guarantees a string key here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, what + " is not valid JSON: " + jsonProblem(err)
		}
		if i := keyIndex(key); i >= 0 {
			if obj.raw[i] != nil {
				obj.dup = append(obj.dup, key)
			}
			obj.raw[i] = bytes.TrimSpace(raw)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, what + " is not valid JSON: " + jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, what + " has more after the JSON object"
	}
	return obj, ""
}

func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end"
	}
	return err.Error()
}

func tokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// kind names the JSON type of a raw value in problems.
func kind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// stringValue decodes raw, which must be a JSON string, null or absent. ok is false when
// it is null or absent; problem is set when it is another type.
func stringValue(name string, raw json.RawMessage) (v string, ok bool, problem string) {
	if raw == nil || isNull(raw) {
		return "", false, ""
	}
	if raw[0] != '"' {
		return "", false, fmt.Sprintf("%s must be a string, not %s", name, kind(raw))
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		// No escapes: the decoder has checked the syntax and DecodeRequest the UTF-8.
		return string(inner), true, ""
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, fmt.Sprintf("%s is not a valid JSON string", name)
	}
	return v, true, ""
}
