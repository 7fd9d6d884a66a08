package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// results is "revoker results": the audit log, filtered, as a table or one
// stored document a line; with --follow, new results as they are stored.
// It reads the results stream and the untrusted rejections' stream as one
// log, in the order they were stored.
func results(ctx context.Context, cfg Config, logger *slog.Logger, stdout, stderr io.Writer) error {
	ctx, nc, done, err := connectCLI(ctx, cfg, "revoker-results", logger)
	if err != nil {
		return err
	}
	defer done()
	defer nc.Close()
	return refusal(ctx, explainJetStream(nc, readResults(ctx, nc, cfg, logger, stdout, stderr)))
}

func readResults(ctx context.Context, nc *nats.Conn, cfg Config, logger *slog.Logger, stdout, stderr io.Writer) error {
	f := newResultFilter(cfg)
	log, err := openAuditLog(ctx, nc, cfg, f.subject(cfg.ResultsSubject))
	if err != nil {
		return err
	}
	logs := []*auditLog{log}
	if f.selects(events.Rejected) {
		untrusted, err := openUntrustedLog(ctx, nc)
		if err != nil {
			return err
		}
		if untrusted != nil {
			logs = append(logs, untrusted)
		}
	}
	p := &resultPrinter{w: bufio.NewWriterSize(stdout, 64<<10), json: cfg.JSON, filter: f, logger: logger}
	if cfg.Follow && !cfg.JSON {
		p.header() // at once: the operator sees that it is watching
		if err := p.w.Flush(); err != nil {
			return err
		}
	}
	if err := readLogs(ctx, logs, cfg.Since, cfg.Follow, p.print, p.w.Flush); err != nil || cfg.Follow {
		return err
	}
	if err := p.printScheduled(ctx, nc); err != nil {
		return err
	}
	if p.rows == 0 && !cfg.JSON {
		fmt.Fprintln(stderr, "no results")
	}
	return nil
}

// resultFilter is what --key, --request and --outcome select.
type resultFilter struct {
	key      string // canonical key ID; "" for any
	request  string // request id, or its prefix when prefix; "" for any
	prefix   bool
	outcomes []events.Outcome // empty for any
}

func newResultFilter(cfg Config) resultFilter {
	f := resultFilter{key: cfg.Key, request: cfg.Request, outcomes: cfg.Outcomes}
	f.request, f.prefix = strings.CutSuffix(f.request, "*")
	return f
}

// selects reports whether results with outcome o can match.
func (f resultFilter) selects(o events.Outcome) bool {
	return len(f.outcomes) == 0 || slices.Contains(f.outcomes, o)
}

// subject is the results subject to read: one outcome's, or all of them.
// The stream selects by it; any other filter is applied here.
func (f resultFilter) subject(prefix string) string {
	if len(f.outcomes) == 1 {
		return events.ResultSubject(prefix, f.outcomes[0])
	}
	return prefix + ".>"
}

// match reports whether the stored result r, which says res, is selected.
// A request pattern matches the request id or the message id the result is
// stored under (untrusted-... for a rejection whose id was not trusted).
func (f resultFilter) match(r storedResult, res *events.Result) bool {
	switch {
	case f.key != "" && events.CanonicalAPIKeyID(res.APIKeyID) != f.key:
		return false
	case len(f.outcomes) > 0 && !slices.Contains(f.outcomes, res.Outcome):
		return false
	}
	return f.matchRequest(res.RequestID) || f.matchRequest(r.MsgID)
}

// matchRequest reports whether --request selects request id.
func (f resultFilter) matchRequest(id string) bool {
	switch {
	case f.prefix && f.request != "":
		return strings.HasPrefix(id, f.request)
	case f.request != "":
		return id == f.request
	}
	return true
}

// resultPrinter prints the stored results its filter selects.
type resultPrinter struct {
	w      *bufio.Writer
	json   bool
	filter resultFilter
	logger *slog.Logger
	rows   int
	titled bool
}

// The table's columns; wider values push the rest of their row right.
const resultRow = "%-20s  %-30s  %-36s  %-15s  %-23s  %-8s  %-24s  %s\n"

func (p *resultPrinter) header() {
	if !p.titled {
		fmt.Fprintf(p.w, resultRow, "STORED", "REQUEST", "KEY", "OUTCOME", "CODE", "ATTEMPTS", "SCOPES", "CANCELLED")
		p.titled = true
	}
}

func (p *resultPrinter) print(r storedResult) error {
	doc, err := events.ResultDoc(r.Header, r.Doc)
	var res events.Result
	if err == nil {
		res, err = events.ParseResult(doc)
	}
	if err != nil {
		p.logger.Warn("skipping a stored message that is not a result", "seq", r.Seq, "subject", r.Subject, "err", err)
		return nil
	}
	if !p.filter.match(r, &res) {
		return nil
	}
	p.rows++
	if p.json {
		if _, err := p.w.Write(events.EscapeJSON(doc)); err != nil {
			return err
		}
		return p.w.WriteByte('\n')
	}
	p.header()
	code := "-"
	if res.Error != nil {
		code = string(res.Error.Code)
	}
	_, err = fmt.Fprintf(p.w, resultRow, r.Stored.UTC().Format("2006-01-02T15:04:05Z"), cell(res.RequestID),
		cell(res.APIKeyID), cell(string(res.Outcome)), cell(code), strconv.Itoa(res.Attempts),
		cell(blastCell(res)), cell(containmentCell(res.Containment)))
	return err
}

// printScheduled adds the key's requests still waiting for their
// not_before (revoke --at) when --key selects one key: they have no result
// yet, and the ledger lists them.
func (p *resultPrinter) printScheduled(ctx context.Context, nc *nats.Conn) error {
	if p.filter.key == "" || !p.filter.selects(scheduledOutcome) {
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kl, err := ledger.Open(ctx, js)
	if err != nil {
		return nil // no ledger: nothing scheduled either
	}
	list, err := kl.Scheduled(ctx, p.filter.key)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, s := range list {
		if !now.Before(s.NotBefore) || !p.filter.matchRequest(s.RequestID) {
			continue // due: its result is above, or on its way
		}
		p.rows++
		if p.json {
			b, _ := json.Marshal(scheduledLine{s.RequestID, s.RequestSeq, p.filter.key, string(scheduledOutcome), s.NotBefore.UTC()})
			if _, err := p.w.Write(append(events.EscapeJSON(b), '\n')); err != nil {
				return err
			}
			continue
		}
		p.header()
		if _, err := fmt.Fprintf(p.w, resultRow, "-", cell(s.RequestID), cell(p.filter.key), string(scheduledOutcome),
			"for "+s.NotBefore.UTC().Format("2006-01-02T15:04:05Z"), "0", "", ""); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// scheduledOutcome is how results and revoke --at show a request waiting for
// its not_before: not an outcome of the contract, it has none yet.
const scheduledOutcome = events.Outcome("scheduled")

// blastCell is a result's blast radius in one cell: the key's scopes as the
// account listed them, "@S" for a key restricted to subaccount S; "" when
// the key was not listed.
func blastCell(res events.Result) string {
	if res.KeyScopes == nil {
		return ""
	}
	s := strings.Join(res.KeyScopes, ",")
	if s == "" {
		s = "(none)"
	}
	if res.KeySubaccount != nil {
		s += "@" + strconv.Itoa(*res.KeySubaccount)
	}
	return s
}

// containmentCell is what cancel_orders did: the orders cancelled, or the
// error's code; "" for a request without cancel_orders.
func containmentCell(c *events.Containment) string {
	switch {
	case c == nil:
		return ""
	case c.Error != nil:
		return string(c.Error.Code)
	}
	return strconv.Itoa(c.OrdersCancelled)
}

// cell is s as a table or a line shows it: "-" when empty, quoted unless
// events.Printable (a terminal must not act on what a request or Kalshi
// said, nor show it reordered or hidden).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return events.QuoteIfNeeded(s)
}

// jsonWriter writes JSON documents to w with every character that is not
// printable escaped (events.EscapeJSON). Each Write must be whole documents,
// as json.Encoder's are.
type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if _, err := j.w.Write(events.EscapeJSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
