package events

// The CloudEvents structured form: a body with "specversion", whose attributes sit at
// the top level and whose request fields sit in its "data" object.

import (
	"encoding/json"
	"time"
)

// ceAttrs are the CloudEvents attributes revoker uses, each valid or empty.
type ceAttrs struct {
	id     string
	source string
	time   time.Time
	data   json.RawMessage // structured mode only: the data object
}

// structured checks the attributes of a structured CloudEvent.
func (d *decoder) structured(top *object) ceAttrs {
	var ce ceAttrs
	d.dups(top, "body")
	if v, ok, problem := stringValue("specversion", top.raw[kSpecVersion]); problem != "" {
		d.add(problem)
	} else if !ok {
		d.add(`specversion must be "1.0"`)
	} else if v != "1.0" {
		d.addf(`specversion %s is not supported (want "1.0")`, Quote(v))
	}
	if v, ok := d.requiredString("id", top.raw[kID]); ok {
		if problem := d.checkID("id", v); problem != "" {
			d.add(problem)
		} else {
			ce.id = v
		}
	}
	if v, ok := d.requiredString("source", top.raw[kSource]); ok {
		if problem := checkText("source", v); problem != "" {
			d.add(problem)
		} else {
			ce.source = v
		}
	}
	if v, ok := d.requiredString("type", top.raw[kType]); ok {
		d.add(checkText("type", v))
	}
	if v, ok, problem := stringValue("datacontenttype", top.raw[kDataContentType]); problem != "" {
		d.add(problem)
	} else if ok {
		d.add(checkJSONMediaType("datacontenttype", v))
	}
	if v, ok, problem := stringValue("time", top.raw[kTime]); problem != "" {
		d.add(problem)
	} else if ok {
		t, problem := parseTime("time", v)
		d.add(problem)
		ce.time = t
	}
	data := top.raw[kData]
	switch {
	case top.raw[kDataBase64] != nil:
		d.add("data_base64 is not supported; send data as a JSON object")
	case data == nil || isNull(data):
		d.add("data is required: the request fields go inside a data object")
	case data[0] != '{':
		d.addf("data must be a JSON object, not %s", kind(data))
	default:
		ce.data = data
	}
	return ce
}
