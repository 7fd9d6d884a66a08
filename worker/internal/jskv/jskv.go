// Package jskv holds what package worker and its budget both do with
// JetStream key-value buckets.
package jskv

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Ensure binds to the bucket kc names, creating it as kc says when it is
// missing; another process may be creating it at the same time.
func Ensure(ctx context.Context, js jetstream.JetStream, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, kc.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	if kv, err = js.CreateKeyValue(ctx, kc); errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, kc.Bucket)
	}
	return kv, err
}
