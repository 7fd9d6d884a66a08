package budget

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker/internal/jskv"
)

// Where the replica plan is kept (the KV bucket ReplicasBucket), and what
// the operator console (package worker/console) reads of it without
// reaching into a Share's state.

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
	doc, _, err := (&kvShareStore{js: js, key: replicaPlanKey(group)}).get(ctx)
	if err != nil || doc == nil {
		return nil, err
	}
	var plan sharePlan
	if err := json.Unmarshal(doc, &plan); err != nil {
		return nil, fmt.Errorf("replica plan: %w", err)
	}
	members := make([]ReplicaMember, 0, len(plan.Members))
	for id, m := range plan.Members {
		members = append(members, ReplicaMember{ID: id, Share: m.Share, Fixed: m.Fixed})
	}
	slices.SortFunc(members, func(a, b ReplicaMember) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}

// kvShareStore keeps the plan under key in ReplicasBucket, creating the
// bucket with create when it is missing and create is set.
type kvShareStore struct {
	js     jetstream.JetStream
	key    string
	create *jetstream.KeyValueConfig
	mu     sync.Mutex
	kv     jetstream.KeyValue
}

func (k *kvShareStore) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kv != nil {
		return k.kv, nil
	}
	var kv jetstream.KeyValue
	var err error
	if k.create != nil {
		kv, err = jskv.Ensure(ctx, k.js, *k.create)
	} else {
		kv, err = k.js.KeyValue(ctx, ReplicasBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("replica plan bucket %s: %w", ReplicasBucket, err)
	}
	k.kv = kv
	return kv, nil
}

func (k *kvShareStore) get(ctx context.Context) ([]byte, uint64, error) {
	kv, err := k.bucket(ctx)
	if err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, k.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

func (k *kvShareStore) put(ctx context.Context, doc []byte, rev uint64) (uint64, error) {
	kv, err := k.bucket(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	if rev == 0 {
		n, err = kv.Create(ctx, k.key, doc)
	} else {
		n, err = kv.Update(ctx, k.key, doc, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errShareConflict
	}
	return n, err
}

func (k *kvShareStore) remove(ctx context.Context, rev uint64) error {
	kv, err := k.bucket(ctx)
	if err != nil {
		return err
	}
	err = kv.Delete(ctx, k.key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errShareConflict
	}
	return err
}

// BucketConfig is the replica plan bucket as provisioning creates it, with
// replicas copies of its data: one small document per deployment, rewritten
// by every replica every ShareBeat. A plan nobody wrote for replicasTTL is
// dropped.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       ReplicasBucket,
		Description:  "revoker: replicas sharing the account's delete budget",
		History:      1,
		TTL:          replicasTTL,
		MaxBytes:     8 << 20,
		MaxValueSize: 64 << 10,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas,
	}
}
