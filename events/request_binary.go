package events

// The CloudEvents binary form: attributes in ce-* headers, the plain fields in the
// body; and the message headers DecodeRequest reads, in every form.

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// binary checks the attributes of a binary CloudEvent.
func (d *decoder) binary() ceAttrs {
	var ce ceAttrs
	h := &d.hdr
	if !h.has(hSpecVersion) {
		d.add("ce-specversion header is required")
	} else if v := h.val[hSpecVersion]; v != "1.0" {
		d.addf(`ce-specversion header %s is not supported (want "1.0")`, Quote(v))
	}
	if !h.has(hID) {
		d.add("ce-id header is required")
	} else if problem := d.checkID("ce-id header", h.val[hID]); problem != "" {
		d.add(problem)
	} else {
		ce.id = h.val[hID]
	}
	if !h.has(hSource) || h.val[hSource] == "" {
		d.add("ce-source header is required")
	} else if problem := checkText("ce-source header", h.val[hSource]); problem != "" {
		d.add(problem)
	} else {
		ce.source = h.val[hSource]
	}
	if !h.has(hType) || h.val[hType] == "" {
		d.add("ce-type header is required")
	} else {
		d.add(checkText("ce-type header", h.val[hType]))
	}
	if h.has(hTime) {
		t, problem := parseTime("ce-time header", h.val[hTime])
		d.add(problem)
		ce.time = t
	}
	if h.has(hDataContentType) {
		d.add(checkJSONMediaType("ce-datacontenttype header", h.val[hDataContentType]))
	}
	if h.has(hContentType) {
		d.add(checkJSONMediaType("Content-Type header", h.val[hContentType]))
	}
	return ce
}

// Headers DecodeRequest reads.
const (
	hSpecVersion = iota
	hID
	hSource
	hType
	hTime
	hDataContentType
	hContentType
	hMsgID
	nHeaders
)

var headerNames = [nHeaders]string{
	hSpecVersion:     "ce-specversion",
	hID:              "ce-id",
	hSource:          "ce-source",
	hType:            "ce-type",
	hTime:            "ce-time",
	hDataContentType: "ce-datacontenttype",
	hContentType:     "Content-Type",
	hMsgID:           "Nats-Msg-Id",
}

// headers holds the first value of each header DecodeRequest reads. When a header appears
// under several spellings, the spelling that sorts first wins, so the choice is stable.
type headers struct {
	val [nHeaders]string
	key [nHeaders]string // the spelling val came from; "" when absent
}

func readHeaders(h map[string][]string) headers {
	var hs headers
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		for i, name := range headerNames {
			if !strings.EqualFold(k, name) {
				continue
			}
			if hs.key[i] == "" || k < hs.key[i] {
				hs.key[i], hs.val[i] = k, vs[0]
			}
			break
		}
	}
	for i := hSpecVersion; i <= hDataContentType; i++ {
		if hs.key[i] != "" {
			hs.val[i] = percentDecode(hs.val[i])
		}
	}
	return hs
}

func (h *headers) has(i int) bool { return h.key[i] != "" }

// binary reports whether the headers mark a binary CloudEvent.
func (h *headers) binary() bool {
	return h.has(hSpecVersion) || h.has(hID) || h.has(hSource) || h.has(hType)
}

// percentDecode decodes a CloudEvents header value that is validly percent-encoded, and
// returns any other value as it is.
func percentDecode(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	if d, err := url.PathUnescape(v); err == nil && utf8.ValidString(d) {
		return d
	}
	return v
}
