package deploy_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
)

type alertRule struct {
	Alert       string
	Expr        string
	For         string
	Labels      map[string]string
	Annotations map[string]string
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	docs, err := yamlDocuments(readFile(t, "prometheus/alerts.yaml"))
	if err != nil || len(docs) != 1 {
		t.Fatalf("alerts.yaml: %d documents, %v", len(docs), err)
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []alertRule
		}
	}
	if err := json.Unmarshal(docs[0], &f); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q is unnamed or empty", g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	return rules
}

// promDuration parses Prometheus durations such as 2m, 1h30m, 10s.
func promDuration(s string) (time.Duration, bool) {
	if !regexp.MustCompile(`^([0-9]+(ms|s|m|h))+$`).MatchString(s) {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// attackCodes are the rejections where an attack shows (issue 12): a request
// revoker must refuse, from someone who may publish requests. allCodes is
// every error code a result can carry, and "" (none). Both come from the
// code table, events.Codes.
var attackCodes, allCodes = func() (attack, all []events.Code) {
	all = []events.Code{""}
	for _, ci := range events.Codes() {
		all = append(all, ci.Code)
		if ci.Attack {
			attack = append(attack, ci.Code)
		}
	}
	return attack, all
}()

var (
	resultsSelectorRE = regexp.MustCompile(`revoker_results_total\s*\{([^}]*)\}`)
	labelMatcherRE    = regexp.MustCompile(`\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)`)
	literalAltRE      = regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`)
)

// selectsAttackCodes checks that expr reads revoker_results_total and that every
// selector of it matches exactly the rejected results with one of attackCodes:
// outcome="rejected", code=~ the four codes as a plain alternation (nothing that
// would also match a code added later), and at most the dashboard's job filter.
func selectsAttackCodes(expr string) error {
	sels := resultsSelectorRE.FindAllStringSubmatch(expr, -1)
	if len(sels) == 0 {
		return fmt.Errorf("no revoker_results_total{...} selector in %q", expr)
	}
	for _, sel := range sels {
		matchers := map[string][2]string{}
		rest := sel[1]
		for rest != "" {
			m := labelMatcherRE.FindStringSubmatch(rest)
			if m == nil || !strings.HasPrefix(rest, m[0]) {
				return fmt.Errorf("selector {%s}: cannot read matchers at %q", sel[1], rest)
			}
			if _, dup := matchers[m[1]]; dup {
				return fmt.Errorf("selector {%s}: label %s matched twice", sel[1], m[1])
			}
			matchers[m[1]] = [2]string{m[2], m[3]}
			rest = rest[len(m[0]):]
		}
		if got := matchers["outcome"]; got != [2]string{"=", "rejected"} {
			return fmt.Errorf("selector {%s}: outcome matcher %q, want =\"rejected\"", sel[1], got)
		}
		code := matchers["code"]
		if code[0] != "=~" || !literalAltRE.MatchString(code[1]) {
			return fmt.Errorf("selector {%s}: code matcher %q, want =~ a plain alternation of codes", sel[1], code)
		}
		alts := strings.Split(code[1], "|")
		slices.Sort(alts)
		var want []string
		for _, c := range attackCodes {
			want = append(want, string(c))
		}
		slices.Sort(want)
		if !slices.Equal(alts, want) {
			return fmt.Errorf("selector {%s}: codes %q, want exactly %q", sel[1], alts, want)
		}
		// What Prometheus matches (fully anchored), against every code there is.
		re := regexp.MustCompile("^(?:" + code[1] + ")$")
		for _, c := range allCodes {
			if re.MatchString(string(c)) != slices.Contains(attackCodes, c) {
				return fmt.Errorf("selector {%s}: code %q matched=%v", sel[1], c, re.MatchString(string(c)))
			}
		}
		for label, m := range matchers {
			if label != "outcome" && label != "code" && (label != "job" || m != [2]string{"=~", "$job"}) {
				return fmt.Errorf("selector {%s}: extra matcher %s%s%q narrows it", sel[1], label, m[0], m[1])
			}
		}
	}
	return nil
}

func TestSelectsAttackCodes(t *testing.T) {
	good := `sum(increase(revoker_results_total{outcome="rejected", code=~"protected_key|unauthorized_request|conflicting_request_id|self_revocation_refused"}[5m]))`
	if err := selectsAttackCodes(good); err != nil {
		t.Errorf("good expression refused: %v", err)
	}
	for _, bad := range []string{
		`sum(increase(revoker_results_total{outcome="rejected"}[5m]))`,
		`increase(revoker_results_total{outcome="rejected",code=~"unauthorized_request|protected_key|self_revocation_refused"}[5m])`,
		`increase(revoker_results_total{outcome="rejected",code=~"unauthorized_request|protected_key|self_revocation_refused|conflicting_request_id|invalid_request"}[5m])`,
		`increase(revoker_results_total{outcome=~"rejected|failed",code=~"unauthorized_request|protected_key|self_revocation_refused|conflicting_request_id"}[5m])`,
		`increase(revoker_results_total{outcome="rejected",code=~".*_request|protected_key|self_revocation_refused|conflicting_request_id"}[5m])`,
		`increase(revoker_results_total{outcome="rejected",code=~"unauthorized_request|protected_key|self_revocation_refused|conflicting_request_id",instance="a"}[5m])`,
		`increase(revoker_results_total{outcome="rejected",code=~"unauthorized_request|protected_key|self_revocation_refused|conflicting_request_id"}[5m]) or revoker_results_total{outcome="rejected"}`,
		`increase(revoker_retries_total[5m])`,
	} {
		if err := selectsAttackCodes(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestAlerts(t *testing.T) {
	rules := alertRules(t)
	names := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" || r.Expr == "" {
			t.Errorf("rule %+v lacks alert or expr", r)
			continue
		}
		if names[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		names[r.Alert] = true
		known, unknown := metricsIn(r.Expr)
		if len(known) == 0 || len(unknown) != 0 {
			t.Errorf("%s: expr %q uses metrics %q, unknown %q", r.Alert, r.Expr, known, unknown)
		}
		if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") {
			t.Errorf("%s: unbalanced expression %q", r.Alert, r.Expr)
		}
		if r.For != "" {
			if _, ok := promDuration(r.For); !ok {
				t.Errorf("%s: for %q", r.Alert, r.For)
			}
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q", r.Alert, s)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: no summary or description", r.Alert)
		}
	}

	// The conditions operators rely on are covered.
	covered := func(what, exprPart string, minFor time.Duration) {
		t.Helper()
		for _, r := range rules {
			d, _ := promDuration(r.For)
			if strings.Contains(r.Expr, exprPart) && d >= minFor {
				return
			}
		}
		t.Errorf("no alert on %s (an expr with %q held for at least %v)", what, exprPart, minFor)
	}
	covered("failed outcomes", `increase(revoker_results_total{outcome="failed"}[10m])`, 0)
	covered("a process's first failed outcome", `revoker_results_total{outcome="failed"} unless revoker_results_total{outcome="failed"} offset 10m`, 0)
	covered("retries piling up", "rate(revoker_retries_total[5m])", 0)
	covered("consumer backlog", "revoker_consumer_pending", 5*time.Minute)
	covered("the ledger filling up", "revoker_ledger_fill_ratio", 5*time.Minute)
	covered("an instance not ready", "revoker_ready == 0", 2*time.Minute)
	covered("the target down", `up{job="revoker"} == 0`, time.Minute)
	covered("a revoked key still alive a minute after its delete", "revoker_unconfirmed_revocations", time.Minute)

	// Attacks are not silent: an alert, firing at once, on exactly the rejections
	// where an attack shows, counting a code's first rejection in a process too.
	var attack *alertRule
	for i, r := range rules {
		if r.Alert == "RevokerRequestRefused" {
			attack = &rules[i]
		}
	}
	if attack == nil {
		t.Fatalf("no RevokerRequestRefused alert on refused requests (%q)", attackCodes)
	}
	if err := selectsAttackCodes(attack.Expr); err != nil {
		t.Errorf("RevokerRequestRefused: %v", err)
	}
	if d, _ := promDuration(attack.For); d != 0 {
		t.Errorf("RevokerRequestRefused waits %v before firing: one refused request is enough", d)
	}
	// increase() misses a series' first sample (a code's first rejection in a
	// process), so the series new since the window began count too; they come first,
	// as "or" keeps its left side's value (increase's 0) for the same labels.
	newSeries := regexp.MustCompile(`unless\s+revoker_results_total\{[^}]*\}\s+offset`).FindStringIndex(attack.Expr)
	increase := strings.Index(attack.Expr, "increase(revoker_results_total{")
	if newSeries == nil || increase < 0 || !regexp.MustCompile(`\)\s+or\s+increase\(`).MatchString(attack.Expr) || newSeries[0] > increase {
		t.Errorf("RevokerRequestRefused: want (series unless series offset W) or increase(series[W]); got %q", attack.Expr)
	}
	for _, c := range attackCodes {
		if !strings.Contains(attack.Annotations["description"], string(c)) {
			t.Errorf("RevokerRequestRefused: the description does not say what %s means", c)
		}
	}
}

// The alert on failed outcomes tells the operator what each failure code
// means: a code added to events.Codes with outcome failed must be named in
// its description.
func TestFailedAlertNamesEveryFailedCode(t *testing.T) {
	var failed []alertRule
	for _, r := range alertRules(t) {
		if strings.Contains(r.Expr, `revoker_results_total{outcome="failed"}`) {
			failed = append(failed, r)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("%d alerts on failed outcomes, want 1", len(failed))
	}
	for _, ci := range events.Codes() {
		if ci.Outcome == events.Failed && !strings.Contains(failed[0].Annotations["description"], string(ci.Code)) {
			t.Errorf("%s: the description does not say what %s means (%s)", failed[0].Alert, ci.Code, ci.Meaning)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		Title         string
		UID           string
		SchemaVersion int
		Panels        []struct {
			ID      int
			Type    string
			Title   string
			GridPos *struct{ X, Y, W, H int }
			Targets []struct {
				RefID string
				Expr  string
			}
		}
		Templating struct {
			List []struct{ Name, Type string }
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(readFile(t, "grafana/revoker-dashboard.json"))))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("revoker-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
		t.Fatalf("dashboard title %q uid %q schemaVersion %d with %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard is bound to one Prometheus")
	}

	ids := map[int]bool{}
	used := map[string]bool{}
	cells := map[[2]int]int{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
			continue
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Errorf("panels %d and %d overlap", other, p.ID)
				}
				cells[[2]int{x, y}] = p.ID
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no title or no query", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, v := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q uses undefined variable $%s", p.Title, v[1])
				}
			}
			known, unknown := metricsIn(tg.Expr)
			if len(known) == 0 || len(unknown) != 0 {
				t.Errorf("panel %q: expr %q uses metrics %q, unknown %q", p.Title, tg.Expr, known, unknown)
			}
			for _, m := range known {
				used[m] = true
			}
		}
	}
	for m := range knownMetrics() {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}

	// A panel shows the refused requests where an attack shows, and only those.
	attackPanel := false
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if p.Type != "row" && selectsAttackCodes(tg.Expr) == nil {
				attackPanel = true
			}
		}
	}
	if !attackPanel {
		t.Errorf("no panel shows the rejections %q", attackCodes)
	}
}
