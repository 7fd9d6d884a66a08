package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/provision"
)

// How the audit log is read.
const (
	// directBatch is how many results one batched direct get returns.
	directBatch = 1000
	// getWindow is how many single-message gets are in flight at once when
	// the stream does not allow direct gets.
	getWindow = 256
	// answerTimeout bounds the wait for each answer from JetStream.
	answerTimeout = 5 * time.Second
	// followPoll is how often --follow looks for new results when no live
	// result woke it; followRetry how soon it looks again after a live
	// result it could not read yet (not yet stored when it looked).
	followPoll  = time.Second
	followRetry = 100 * time.Millisecond
)

const (
	jsAPI = "$JS.API."
	// statusHeader and descriptionHeader are where nats.go puts the status
	// line of a message that has one ("NATS/1.0 404 Message Not Found").
	statusHeader      = "Status"
	descriptionHeader = "Description"
	// numPendingHeader says, on the end of a batched direct get, how many
	// messages on the subject are left after it.
	numPendingHeader = "Nats-Num-Pending"
)

// storedResult is one message of the results stream (or of the untrusted
// rejections').
type storedResult struct {
	Seq     uint64
	Stored  time.Time // when the stream stored it
	Subject string
	MsgID   string      // its Nats-Msg-Id: the request id, or an untrusted-... id
	Header  nats.Header // as stored: in binary mode it carries the CloudEvents attributes
	Doc     []byte      // the message body, as stored (events.ResultDoc makes it a document)
}

// auditLog reads one stream of results without creating anything on the
// server: it needs only stream info and message gets, the two things a
// read-only auditor may do.
//
// When the stream allows direct gets, it reads up to directBatch results a
// request ($JS.API.DIRECT.GET.<stream>); otherwise it pipelines
// single-message gets by sequence ($JS.API.STREAM.MSG.GET.<stream>),
// getWindow at a time. Either reads 10,000 results in well under a second
// on loopback.
type auditLog struct {
	nc      *nats.Conn
	stream  jetstream.Stream
	name    string
	subject string // the subjects read: PREFIX.> or PREFIX.<outcome>
	direct  bool
	// wake: --follow subscribes to subject to learn of a new result at
	// once; without it, it polls every followPoll.
	wake bool
}

// openAuditLog binds to the results stream of cfg, to read the results on
// subject.
func openAuditLog(ctx context.Context, nc *nats.Conn, cfg Config, subject string) (*auditLog, error) {
	l, err := openLog(ctx, nc, cfg.ResultsStream, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("the results stream %s does not exist: no \"revoker run\" has provisioned it yet", cfg.ResultsStream)
	}
	if err != nil {
		return nil, fmt.Errorf("results stream %s: %w", cfg.ResultsStream, err)
	}
	l.wake = true
	return l, nil
}

// openUntrustedLog binds to the stream of untrusted rejections, if there is
// one: a deployment that no revoker run of this version provisioned has
// none, and keeps its rejections in the results stream. The auditor may
// read it but not subscribe to it: --follow polls it.
func openUntrustedLog(ctx context.Context, nc *nats.Conn) (*auditLog, error) {
	l, err := openLog(ctx, nc, provision.UntrustedStream, provision.UntrustedSubject+".>")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", provision.UntrustedStream, err)
	}
	return l, nil
}

func openLog(ctx context.Context, nc *nats.Conn, stream, subject string) (*auditLog, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return &auditLog{
		nc:      nc,
		stream:  s,
		name:    stream,
		subject: subject,
		direct:  s.CachedInfo().Config.AllowDirect,
	}, nil
}

// firstSeq is the sequence of the first result on the subject stored at or
// after since (since zero: the stream's first), or the stream's next
// sequence when there is none yet.
func (l *auditLog) firstSeq(ctx context.Context, since time.Time) (uint64, error) {
	info := l.stream.CachedInfo() // read when the log was opened, a moment ago
	if since.IsZero() {
		return max(info.State.FirstSeq, 1), nil
	}
	body, err := json.Marshal(struct {
		StartTime time.Time `json:"start_time"`
		NextFor   string    `json:"next_by_subj"`
	}{since.UTC(), l.subject})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	var seq uint64
	if l.direct {
		m, err := l.nc.RequestWithContext(ctx, jsAPI+"DIRECT.GET."+l.name, body)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", l.name, err)
		}
		if st := m.Header.Get(statusHeader); st != "" {
			if st != "404" {
				return 0, fmt.Errorf("reading %s: status %s %s", l.name, st, m.Header.Get(descriptionHeader))
			}
			return info.State.LastSeq + 1, nil
		}
		seq, _ = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	} else {
		m, err := l.nc.RequestWithContext(ctx, jsAPI+"STREAM.MSG.GET."+l.name, body)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", l.name, err)
		}
		r, found, err := decodeMsgGet(m.Data)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", l.name, err)
		}
		if !found {
			return info.State.LastSeq + 1, nil
		}
		seq = r.Seq
	}
	if seq == 0 {
		return 0, fmt.Errorf("reading %s: an answer without a sequence", l.name)
	}
	return seq, nil
}

// read passes every result on the subject from sequence from on to emit, in
// order, and returns the sequence to read from next time.
func (l *auditLog) read(ctx context.Context, from uint64, emit func(storedResult) error) (uint64, error) {
	if l.direct {
		return l.readDirect(ctx, from, emit)
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return from, fmt.Errorf("results stream %s: %w", l.name, err)
	}
	// Results older than the stream's first were dropped (max age, max bytes).
	return l.readByGet(ctx, max(from, info.State.FirstSeq), info.State.LastSeq, emit)
}

// readDirect reads with batched direct gets until none is left.
func (l *auditLog) readDirect(ctx context.Context, from uint64, emit func(storedResult) error) (uint64, error) {
	inbox := l.nc.NewInbox() // under the connection's prefix, the only inboxes the role may read
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return from, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	next := from
	for {
		body := fmt.Appendf(nil, `{"seq":%d,"next_by_subj":%q,"batch":%d}`, next, l.subject, directBatch)
		if err := l.nc.PublishRequest(jsAPI+"DIRECT.GET."+l.name, inbox, body); err != nil {
			return next, err
		}
		n := 0
	batch:
		for {
			actx, cancel := context.WithTimeout(ctx, answerTimeout)
			m, err := sub.NextMsgWithContext(actx)
			cancel()
			if err != nil {
				return next, fmt.Errorf("reading %s: %w", l.name, err)
			}
			switch st := m.Header.Get(statusHeader); st {
			case "":
			case "404": // nothing at or after next
				return next, nil
			case "204": // the end of this batch; more may follow
				if n == 0 || m.Header.Get(numPendingHeader) == "0" {
					return next, nil
				}
				break batch
			default:
				return next, fmt.Errorf("reading %s: status %s %s", l.name, st, m.Header.Get(descriptionHeader))
			}
			r := storedResult{Subject: m.Header.Get(jetstream.SubjectHeader), MsgID: m.Header.Get(jetstream.MsgIDHeader), Header: m.Header, Doc: m.Data}
			r.Seq, _ = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			r.Stored, _ = time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
			if r.Seq < next {
				return next, fmt.Errorf("reading %s: sequence %d after %d", l.name, r.Seq, next-1)
			}
			if err := emit(r); err != nil {
				return next, err
			}
			next, n = r.Seq+1, n+1
		}
	}
}

// readByGet reads the results from sequence from to upTo with
// single-message gets, getWindow of them in flight, and passes those on the
// subject to emit in order. A sequence without a message (deleted) is
// skipped.
func (l *auditLog) readByGet(ctx context.Context, from, upTo uint64, emit func(storedResult) error) (uint64, error) {
	if from > upTo {
		return from, nil
	}
	inbox := l.nc.NewInbox() // under the connection's prefix, the only inboxes the role may read
	answers := make(chan *nats.Msg, 2*getWindow)
	sub, err := l.nc.ChanSubscribe(inbox+".*", answers)
	if err != nil {
		return from, err
	}
	defer func() { _ = sub.Unsubscribe() }()

	got := make(map[uint64]*storedResult, getWindow) // nil: no message there
	sent, next := from, from
	timer := time.NewTimer(answerTimeout)
	defer timer.Stop()
	for next <= upTo {
		for ; sent <= upTo && sent < next+getWindow; sent++ {
			reply := inbox + "." + strconv.FormatUint(sent, 10)
			if err := l.nc.PublishRequest(jsAPI+"STREAM.MSG.GET."+l.name, reply, fmt.Appendf(nil, `{"seq":%d}`, sent)); err != nil {
				return next, err
			}
		}
		select {
		case m := <-answers:
			seq, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
			if err != nil || seq < next || seq >= sent {
				continue
			}
			r, found, err := decodeMsgGet(m.Data)
			if err != nil {
				return next, fmt.Errorf("reading %s sequence %d: %w", l.name, seq, err)
			}
			if found {
				got[seq] = &r
			} else {
				got[seq] = nil
			}
			timer.Reset(answerTimeout)
		case <-timer.C:
			return next, fmt.Errorf("reading %s: no answer from JetStream within %v", l.name, answerTimeout)
		case <-ctx.Done():
			return next, ctx.Err()
		}
		for {
			r, ok := got[next]
			if !ok {
				break
			}
			delete(got, next)
			if r != nil && subjectMatches(l.subject, r.Subject) {
				if err := emit(*r); err != nil {
					return next, err
				}
			}
			next++
		}
	}
	return next, nil
}

// decodeMsgGet decodes an answer of $JS.API.STREAM.MSG.GET; found is false
// when there is no such message.
func decodeMsgGet(data []byte) (r storedResult, found bool, err error) {
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return r, false, err
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return r, false, nil
	case resp.Error != nil:
		return r, false, fmt.Errorf("%s (%d)", resp.Error.Description, resp.Error.Code)
	case resp.Message == nil:
		return r, false, errors.New("an answer without a message")
	}
	m := resp.Message
	r = storedResult{Seq: m.Sequence, Stored: m.Time, Subject: m.Subject, Doc: m.Data}
	if len(m.Header) > 0 {
		if h, err := nats.DecodeHeadersMsg(m.Header); err == nil {
			r.MsgID, r.Header = h.Get(jetstream.MsgIDHeader), h
		}
	}
	return r, true, nil
}

// subjectMatches reports whether subject is one of filter's: filter is a
// plain subject, or a prefix and ".>".
func subjectMatches(filter, subject string) bool {
	if prefix, ok := strings.CutSuffix(filter, ">"); ok {
		return strings.HasPrefix(subject, prefix) && len(subject) > len(prefix)
	}
	return subject == filter
}

// follow reads from sequence from on, then keeps reading new results as
// they are stored until ctx ends, calling caughtUp after each pass. With
// wake, a live subscription to the subject wakes it as soon as a result is
// published; it also looks every followPoll.
func (l *auditLog) follow(ctx context.Context, from uint64, emit func(storedResult) error, caughtUp func() error) error {
	wake := make(chan struct{}, 1)
	if l.wake {
		sub, err := l.nc.Subscribe(l.subject, func(*nats.Msg) {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", l.subject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := l.nc.FlushTimeout(answerTimeout); err != nil {
			return fmt.Errorf("subscribing to %s: %w", l.subject, err)
		}
	}
	next, woken := from, false
	for {
		before := next
		var err error
		next, err = l.read(ctx, next, emit)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := caughtUp(); err != nil {
			return err
		}
		wait := followPoll
		if woken && next == before {
			wait = followRetry // woken before the result was stored
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
			woken = true
		case <-t.C:
			woken = false
		}
		t.Stop()
	}
}

// sourced is what one log's reader hands the merge: a result, or word that
// the log has nothing newer for now (caughtUp).
type sourced struct {
	r        storedResult
	caughtUp bool
}

// readLogs passes the results of every log (from the first stored at or
// after since) to emit, oldest first across the logs. Without follow it
// returns at the end of them; with follow it then passes new results as
// they are stored, calling flush whenever every log is caught up, until ctx
// ends.
//
// Each log is read by a goroutine of its own into a small buffer; a result
// is emitted once every log has either a result waiting or nothing newer,
// so memory stays bounded however long the logs.
func readLogs(ctx context.Context, logs []*auditLog, since time.Time, follow bool, emit func(storedResult) error, flush func() error) error {
	froms := make([]uint64, len(logs))
	for i, l := range logs {
		from, err := l.firstSeq(ctx, since)
		if err != nil {
			return err
		}
		froms[i] = from
	}
	ctx, cancel := context.WithCancel(ctx)
	chans := make([]chan sourced, len(logs))
	errs := make([]error, len(logs))
	var readers sync.WaitGroup
	defer func() { cancel(); readers.Wait() }() // no reader outlives the call
	for i, l := range logs {
		ch := make(chan sourced, 256)
		chans[i] = ch
		send := func(s sourced) error {
			select {
			case ch <- s:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		readers.Go(func() {
			defer close(ch)
			emitOne := func(r storedResult) error { return send(sourced{r: r}) }
			if follow {
				errs[i] = l.follow(ctx, froms[i], emitOne, func() error { return send(sourced{caughtUp: true}) })
			} else {
				_, errs[i] = l.read(ctx, froms[i], emitOne)
			}
		})
	}

	heads := make([]*storedResult, len(logs))
	idle := make([]bool, len(logs)) // caught up, nothing waiting
	open := len(logs)
	take := func(i int, s sourced, ok bool) error {
		switch {
		case !ok:
			chans[i] = nil
			open--
			if errs[i] != nil && ctx.Err() == nil {
				return errs[i]
			}
		case s.caughtUp:
			idle[i] = true
		default:
			heads[i], idle[i] = &s.r, false
		}
		return nil
	}
	for open > 0 {
		// Every open log must have a result waiting or be caught up before
		// the oldest waiting result is surely the next.
		for i, ch := range chans {
			for ch != nil && heads[i] == nil && !idle[i] {
				select {
				case s, ok := <-ch:
					if err := take(i, s, ok); err != nil {
						return err
					}
					ch = chans[i]
				case <-ctx.Done():
					return stopped(ctx, follow)
				}
			}
		}
		oldest := -1
		for i, h := range heads {
			if h != nil && (oldest < 0 || h.Stored.Before(heads[oldest].Stored)) {
				oldest = i
			}
		}
		if oldest >= 0 {
			r := *heads[oldest]
			heads[oldest] = nil
			if err := emit(r); err != nil {
				return err
			}
			continue
		}
		if open == 0 {
			break
		}
		// Every open log is caught up: show what was printed, then wait for
		// any of them.
		if err := flush(); err != nil {
			return err
		}
		cases := make([]reflect.SelectCase, 0, len(chans)+1)
		index := make([]int, 0, len(chans))
		for i, ch := range chans {
			if ch != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
				index = append(index, i)
			}
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
		chosen, v, ok := reflect.Select(cases)
		if chosen == len(index) {
			return stopped(ctx, follow)
		}
		var s sourced
		if ok {
			s = v.Interface().(sourced)
		}
		if err := take(index[chosen], s, ok); err != nil {
			return err
		}
	}
	return flush()
}

// stopped is what reading returns when ctx ends: nothing for --follow,
// which ends that way (Ctrl-C), and ctx's error for a read cut short.
func stopped(ctx context.Context, follow bool) error {
	if follow {
		return nil
	}
	return ctx.Err()
}
