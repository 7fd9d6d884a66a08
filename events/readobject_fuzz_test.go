package events

import (
	"bytes"
	"slices"
	"testing"
)

func FuzzReadObjectSame(f *testing.F) {
	for _, s := range []string{`{"id":"a","api_key_id":"b"}`, ` { "id" : "a" , "data" : {"x":[1,{"y":"}"}]} , "id":null } `, `{"\u0069d":"x","reason":"a\"b"}`, `[1]`, `{}`, `{"a":1}x`, `{"time":1e5,"type":true,"specversion":"1.0"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		got, gp := readObject(b, "body")
		want, wp := readObjectDecoder(b, "body")
		if gp != wp {
			t.Fatalf("problem %q, want %q", gp, wp)
		}
		if (got == nil) != (want == nil) {
			t.Fatalf("nil mismatch")
		}
		if got == nil {
			return
		}
		for i := range got.raw {
			if !bytes.Equal(got.raw[i], want.raw[i]) || (got.raw[i] == nil) != (want.raw[i] == nil) {
				t.Fatalf("key %s: %q, want %q", keyNames[i], got.raw[i], want.raw[i])
			}
		}
		if !slices.Equal(got.dup, want.dup) {
			t.Fatalf("dup %v, want %v", got.dup, want.dup)
		}
	})
}
