package console

import (
	"time"

	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
)

// The service and its endpoints' subjects.
const (
	ServiceName   = "revoker"
	SubjectKeys   = "revoker.console.keys"
	SubjectPlan   = "revoker.console.plan"
	SubjectStatus = "revoker.console.status"
	SubjectHealth = "revoker.console.health"
)

// Bounds on what one request may ask: a longer key list is split by the
// client, anything larger is refused with a 400.
const (
	MaxKeys         = 1000 // key IDs in one plan or status request, and --except IDs
	MaxRequestBytes = 256 << 10
	maxPattern      = 1 << 10 // --match
)

// Key is one of the account's API keys, as the keys endpoint lists it.
type Key struct {
	ID     string   `json:"api_key_id"`
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// Subaccount is set for a key restricted to one subaccount (0-63).
	Subaccount *int `json:"subaccount,omitempty"`
	Own        bool `json:"own"` // the key the worker signs with
}

// KeysReply is the keys endpoint's answer: the account's keys, from a
// listing made at ListedAt.
type KeysReply struct {
	Keys      []Key     `json:"keys"`
	SelfKeyID string    `json:"self_key_id"`
	ListedAt  time.Time `json:"listed_at"`
}

// PlanRequest asks the plan endpoint for the plan of a dry run (Keys) or
// of "revoke --all" (All, with Match and Except).
type PlanRequest struct {
	Keys   []string `json:"keys,omitempty"`
	All    bool     `json:"all,omitempty"`
	Match  string   `json:"match,omitempty"`
	Except []string `json:"except,omitempty"`
}

// PlanReply is the plan endpoint's answer: Keys for a dry run, All for
// --all, made with Guards (the worker's).
type PlanReply struct {
	Keys     []KeyPlan `json:"keys,omitempty"`
	All      *AllPlan  `json:"all,omitempty"`
	Guards   Guards    `json:"guards"`
	ListedAt time.Time `json:"listed_at"`
}

// StatusRequest asks the status endpoint about keys.
type StatusRequest struct {
	Keys []string `json:"keys"`
}

// KeyStatus is what the worker knows of one key.
type KeyStatus struct {
	APIKeyID string            `json:"api_key_id"` // canonical
	Revoked  *ledger.KeyRecord `json:"revoked"`    // the ledger's record; null when revoker never revoked it
	Listed   bool              `json:"listed"`     // whether the account lists it
}

// StatusReply is the status endpoint's answer, one KeyStatus per key asked.
type StatusReply struct {
	Keys     []KeyStatus `json:"keys"`
	ListedAt time.Time   `json:"listed_at"`
}

// Health is the health endpoint's answer: the replica that answered, and
// the fleet as the replica plan records it.
type Health struct {
	Replica       string                 `json:"replica"`
	Version       string                 `json:"version"`
	Ready         bool                   `json:"ready"`
	NotReady      string                 `json:"not_ready,omitempty"` // why, when not ready
	Credential    bool                   `json:"credential"`          // Kalshi accepts the worker's credential
	CredentialErr string                 `json:"credential_error,omitempty"`
	KalshiBaseURL string                 `json:"kalshi_base_url"`
	SelfKeyID     string                 `json:"self_key_id"`
	Replicas      []budget.ReplicaMember `json:"replicas"`
	ReplicasErr   string                 `json:"replicas_error,omitempty"` // why the plan could not be read
}

// Error codes of the endpoints' micro errors.
const (
	CodeBadRequest  = "400"
	CodeUnavailable = "503" // Kalshi or the ledger did not answer; try again
	CodeInternal    = "500"
)
