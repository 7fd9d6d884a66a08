package deploy_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
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
	docs, err := yamlToJSON(readFile(t, "prometheus/alerts.yaml"))
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
	covered("retries piling up", "rate(revoker_retries_total[5m])", 0)
	covered("consumer backlog", "revoker_consumer_pending", 5*time.Minute)
	covered("an instance not ready", "revoker_ready == 0", 2*time.Minute)
	covered("the target down", `up{job="revoker"} == 0`, time.Minute)
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
	for m := range knownMetrics {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
