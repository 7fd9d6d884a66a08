package events

// The plain request fields (id, api_key_id, leaked_private_key, reason,
// requested_by, source, requested_at, cancel_orders, not_before): the body of a plain
// request, or the data object of a structured CloudEvent.

// fields decodes the plain request fields of obj into req. inData says whether they sit
// inside a structured CloudEvent's data, which only changes how problems are worded.
func (d *decoder) fields(obj *object, inData bool, req *Request) {
	prefix, where := "", "body"
	if inData {
		prefix, where = "data.", "data"
	}
	d.dups(obj, where)

	if v, ok, problem := stringValue(prefix+"id", obj.raw[kID]); problem != "" {
		d.add(problem)
	} else if ok {
		if problem := d.checkID(prefix+"id", v); problem != "" {
			d.add(problem)
		} else {
			d.plainID = v
		}
	}

	name := prefix + "leaked_private_key"
	v, leaked, problem := stringValue(name, obj.raw[kLeakedPrivateKey])
	if problem != "" {
		d.add(problem)
		leaked = true // the problem is enough; no second one for api_key_id
	} else if leaked {
		if problem := checkLeakedKey(name, v); problem != "" {
			d.add(problem)
		} else {
			req.LeakedKey = LeakedKey{pem: v}
		}
	}

	// With a leaked key, api_key_id is an optional hint.
	name = prefix + "api_key_id"
	v, ok, problem := stringValue(name, obj.raw[kAPIKeyID])
	switch {
	case problem != "":
		d.add(problem)
	case !ok && !leaked:
		d.add(name + " is required (or leaked_private_key)")
	case ok && v == "":
		d.add(name + " is empty")
	case ok:
		req.APIKeyID = CanonicalAPIKeyID(cut(v, MaxAPIKeyIDLength))
		d.add(checkAPIKeyID(name, v))
	}

	text := func(k int, dst *string) {
		name := prefix + keyNames[k]
		v, ok, problem := stringValue(name, obj.raw[k])
		if problem != "" {
			d.add(problem)
			return
		}
		if ok {
			*dst = cut(v, MaxTextLength)
			d.add(checkText(name, v))
		}
	}
	text(kReason, &req.Reason)
	text(kRequestedBy, &req.RequestedBy)
	text(kSource, &req.Source)

	name = prefix + "requested_at"
	if v, ok, problem := stringValue(name, obj.raw[kRequestedAt]); problem != "" {
		d.add(problem)
	} else if ok {
		t, problem := parseTime(name, v)
		d.add(problem)
		req.RequestedAt = t
	}

	name = prefix + "cancel_orders"
	if raw := obj.raw[kCancelOrders]; raw != nil && !isNull(raw) {
		if k := kind(raw); k != "a boolean" {
			d.addf("%s must be a boolean, not %s", name, k)
		} else {
			req.CancelOrders = raw[0] == 't'
		}
	}
	d.notBefore(prefix, obj.raw[kNotBefore], req)
}
