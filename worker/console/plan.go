package console

import (
	"path"
	"slices"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
)

// The plans of a key: what a revoke request for it would come to.
const (
	PlanWouldRevoke = "would_revoke"
	PlanNotFound    = "not_found"
	PlanRefused     = "refused"
	PlanSpared      = "spared" // --all leaves it alone
)

// Why --all spares a key.
const (
	SparedOwn         = "own_key"
	SparedProtected   = "protected_key"
	SparedExcept      = "except"
	SparedNotMatching = "not_matching"
)

// Guards are the settings that refuse a key before any DELETE: the
// worker's (KALSHI_API_KEY_ID, REVOKER_ALLOW_SELF_REVOKE,
// REVOKER_PROTECTED_KEYS), canonical IDs.
type Guards struct {
	SelfKeyID       string
	AllowSelfRevoke bool
	ProtectedKeys   []string
}

// KeyPlan is the plan of one key of a dry run; also the --dry-run --json
// line.
type KeyPlan struct {
	APIKeyID string      `json:"api_key_id"`
	Plan     string      `json:"plan"`
	Code     events.Code `json:"code,omitempty"` // the guard's, when refused
}

// AllPlanLine is one key of the --all plan; also its --dry-run --json line.
type AllPlanLine struct {
	APIKeyID string `json:"api_key_id"`
	Name     string `json:"name"`
	Plan     string `json:"plan"`             // would_revoke or spared
	Spared   string `json:"spared,omitempty"` // why: own_key, protected_key, except or not_matching
}

// AllPlan is what "revoke --all" would do to the account's keys.
type AllPlan struct {
	Listed         int           `json:"listed"` // keys the account lists
	Revoke         []AllPlanLine `json:"revoke"`
	Spared         []AllPlanLine `json:"spared"`
	ExceptUnlisted []string      `json:"except_unlisted,omitempty"` // --except IDs the account does not list
}

// Listed is the set of the keys' canonical IDs.
func Listed(keys []kalshi.APIKey) map[string]bool {
	ids := make(map[string]bool, len(keys))
	for _, k := range keys {
		ids[events.CanonicalAPIKeyID(k.ID)] = true
	}
	return ids
}

// PlanKeys decides the plan of each of ids in the order the worker applies
// its guards (a valid ID, then its own key, then the protected keys), then
// from the account's canonical key IDs: refused, not_found or
// would_revoke. Plans name each key as given.
func PlanKeys(g Guards, listed map[string]bool, ids []string) []KeyPlan {
	plans := make([]KeyPlan, len(ids))
	for i, id := range ids {
		p := KeyPlan{APIKeyID: id, Plan: PlanRefused}
		canonical := events.CanonicalAPIKeyID(id)
		switch guard := worker.KeyGuard(canonical, g.SelfKeyID, g.AllowSelfRevoke, g.ProtectedKeys); {
		case !kalshi.ValidKeyID(id):
			p.Code = events.CodeInvalidRequest
		case guard != "":
			p.Code = guard
		case !listed[canonical]:
			p.Plan = PlanNotFound
		default:
			p.Plan = PlanWouldRevoke
		}
		plans[i] = p
	}
	return plans
}

// PlanAll decides, for each key the account lists, whether --all revokes
// it: not the key revoker signs with (even where self-revocation is
// allowed), nor a protected key, nor one of except (canonical IDs), nor,
// with match (a path.Match pattern; "" matches every name), a key whose
// name does not match. A key listed twice, or in two spellings, is planned
// once.
func PlanAll(g Guards, keys []kalshi.APIKey, match string, except []string) AllPlan {
	p := AllPlan{Listed: len(keys), Revoke: []AllPlanLine{}, Spared: []AllPlanLine{}}
	listed := Listed(keys)
	for _, id := range except {
		if !listed[id] {
			p.ExceptUnlisted = append(p.ExceptUnlisted, id)
		}
	}
	planned := make(map[string]bool, len(keys))
	for _, k := range keys {
		id := events.CanonicalAPIKeyID(k.ID)
		if planned[id] {
			continue
		}
		planned[id] = true
		line := AllPlanLine{APIKeyID: id, Name: k.Name, Plan: PlanWouldRevoke}
		guard := worker.KeyGuard(id, g.SelfKeyID, false, g.ProtectedKeys)
		switch matched, _ := path.Match(match, k.Name); {
		case guard == events.CodeSelfRevocationRefused:
			line.Spared = SparedOwn
		case guard == events.CodeProtectedKey:
			line.Spared = SparedProtected
		case slices.Contains(except, id):
			line.Spared = SparedExcept
		case match != "" && !matched:
			line.Spared = SparedNotMatching
		}
		if line.Spared != "" {
			line.Plan = PlanSpared
			p.Spared = append(p.Spared, line)
		} else {
			p.Revoke = append(p.Revoke, line)
		}
	}
	return p
}
