package events

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestCodesTable(t *testing.T) {
	seen := map[Code]bool{}
	for _, ci := range Codes() {
		if seen[ci.Code] || ci.Code == "" {
			t.Errorf("code %q is empty or listed twice", ci.Code)
		}
		seen[ci.Code] = true
		if ci.Outcome != Rejected && ci.Outcome != Failed && ci.Outcome != "" {
			t.Errorf("%s: outcome %q, want rejected, failed or none (a containment error)", ci.Code, ci.Outcome)
		}
		if ci.Attack && ci.Outcome != Rejected {
			t.Errorf("%s: an attack shows only in a rejection, not with outcome %q", ci.Code, ci.Outcome)
		}
		if ci.Meaning == "" || strings.Contains(ci.Meaning, "\n") {
			t.Errorf("%s: meaning %q, want one line", ci.Code, ci.Meaning)
		}
		if got := ci.Code.Outcome(); got != ci.Outcome {
			t.Errorf("Code(%q).Outcome() = %q, the table says %q", ci.Code, got, ci.Outcome)
		}
	}
	if Codes()[0].Code = "changed"; codes[0].Code == "changed" {
		t.Error("Codes returns the table itself: a caller can change it")
	}
}

// codeRE is how a code looks in the contract: lower-case words joined by "_".
var codeRE = regexp.MustCompile("`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")

// contractCodeProblems compares the contract's Outcomes table (and, for a
// containment error, the whole contract) with the code table: each rejected
// and failed row names exactly its outcome's codes, the rejected row's
// operator column names exactly the attack codes, and every containment code
// appears somewhere.
func contractCodeProblems(doc string, table []CodeInfo) []string {
	var problems []string
	_, outcomes, ok := strings.Cut(doc, "### Outcomes\n")
	if !ok {
		return []string{`no "### Outcomes" section`}
	}
	rows := map[Outcome][]string{} // the cells of each outcome's row
	for _, line := range strings.Split(outcomes, "\n") {
		if strings.HasPrefix(line, "#") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		o := Outcome(strings.Trim(strings.TrimSpace(cells[1]), "`"))
		rows[o] = cells[1 : len(cells)-1]
	}
	named := func(cell string) []Code {
		var cs []Code
		for _, m := range codeRE.FindAllStringSubmatch(cell, -1) {
			if c := Code(m[1]); !slices.Contains(cs, c) {
				cs = append(cs, c)
			}
		}
		slices.Sort(cs)
		return cs
	}
	compare := func(what string, got []Code, want func(CodeInfo) bool) {
		var w []Code
		for _, ci := range table {
			if want(ci) {
				w = append(w, ci.Code)
			}
		}
		slices.Sort(w)
		for _, c := range w {
			if !slices.Contains(got, c) {
				problems = append(problems, what+" misses "+string(c))
			}
		}
		for _, c := range got {
			if !slices.Contains(w, c) {
				problems = append(problems, what+" names "+string(c)+", which the code table does not put there")
			}
		}
	}
	for _, o := range []Outcome{Rejected, Failed} {
		row := rows[o]
		if len(row) < 3 {
			problems = append(problems, "no row for "+string(o))
			continue
		}
		compare("the "+string(o)+" row", named(row[1]), func(ci CodeInfo) bool { return ci.Outcome == o })
		if o == Rejected {
			compare("the rejected row's operator column (may be an attack)", named(row[2]), func(ci CodeInfo) bool { return ci.Attack })
		}
	}
	for _, ci := range table {
		if ci.Outcome == "" && !strings.Contains(doc, "`"+string(ci.Code)+"`") {
			problems = append(problems, "the contract does not name the containment error "+string(ci.Code))
		}
	}
	return problems
}

// The contract's Outcomes table names every code with its outcome, and the
// attack codes where an operator reads what to do.
func TestContractNamesEveryCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range contractCodeProblems(string(doc), Codes()) {
		t.Errorf("docs/contract.md: %s", p)
	}
}

// The check finds a code the contract misses, one it puts under the wrong
// outcome, and a missing attack code.
func TestContractCodeProblemsFindsGaps(t *testing.T) {
	doc := "## Results\n\n### Outcomes\n\n| outcome | meaning | what to do |\n| --- | --- | --- |\n" +
		"| `rejected` | `invalid_request` or `protected_key` or `max_deliveries` | `protected_key` may be an attack |\n" +
		"| `failed` | `kalshi_unauthorized` | check |\n\n## Next\n"
	table := []CodeInfo{
		{CodeInvalidRequest, Rejected, false, "x"},
		{CodeProtectedKey, Rejected, true, "x"},
		{CodeUnauthorizedRequest, Rejected, true, "x"},
		{CodeKalshiUnauthorized, Failed, false, "x"},
		{CodeMaxDeliveries, Failed, false, "x"},
		{CodeCancelOrdersNotAllowed, "", false, "x"},
	}
	got := contractCodeProblems(doc, table)
	for _, want := range []string{
		"the rejected row misses unauthorized_request",
		"the rejected row names max_deliveries, which the code table does not put there",
		"the rejected row's operator column (may be an attack) misses unauthorized_request",
		"the failed row misses max_deliveries",
		"the contract does not name the containment error cancel_orders_not_allowed",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
	if len(got) != 5 {
		t.Errorf("got %d problems, want 5: %q", len(got), got)
	}
}
