package budget

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// What the operator console (package worker/console) reads of the replica
// plan, without reaching into a Share's state.

// defaultGroup is the group of a plan or a fleet when none is set: the
// default consumer name (worker.DefaultConsumer).
const defaultGroup = "revoker"

// ID names this replica in the replica plan.
func (s *Share) ID() string { return s.cfg.ID }

// ReplicaMember is one replica of the replica plan: its name and the
// fraction of the account's budget it records.
type ReplicaMember struct {
	ID    string  `json:"id"`
	Share float64 `json:"share"`
	Fixed bool    `json:"fixed,omitempty"` // REVOKER_RATE_SHARE fixes it
}

// replicaPlanKey is the key of group's plan in ReplicasBucket (as NewShare
// writes it).
func replicaPlanKey(group string) string {
	return "plan." + base64.RawURLEncoding.EncodeToString([]byte(group))
}

// ReadReplicaPlan returns the members of group's replica plan (group is
// the consumer name), sorted by ID: none when the plan is empty or gone.
func ReadReplicaPlan(ctx context.Context, js jetstream.JetStream, group string) ([]ReplicaMember, error) {
	if group == "" {
		group = defaultGroup
	}
	kv, err := js.KeyValue(ctx, ReplicasBucket)
	if err != nil {
		return nil, fmt.Errorf("replica plan bucket %s: %w", ReplicasBucket, err)
	}
	e, err := kv.Get(ctx, replicaPlanKey(group))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var plan sharePlan
	if err := json.Unmarshal(e.Value(), &plan); err != nil {
		return nil, fmt.Errorf("replica plan: %w", err)
	}
	members := make([]ReplicaMember, 0, len(plan.Members))
	for id, m := range plan.Members {
		members = append(members, ReplicaMember{ID: id, Share: m.Share, Fixed: m.Fixed})
	}
	slices.SortFunc(members, func(a, b ReplicaMember) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}
