package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/fleet"
)

// replica is this worker's part in the fleet (package fleet): what it holds,
// and the account listing the replicas share. It is made on first use, so
// that a Worker built without New (unit tests) has one too: alone, without
// a NATS connection.
func (w *Worker) replica() *fleet.Replica {
	w.fleetOnce.Do(func() {
		var nc *nats.Conn
		if w.js != nil {
			nc = w.js.Conn()
		}
		w.fleet = fleet.New(fleet.Config{
			Conn:           nc,
			RequestsStream: w.cfg.RequestsStream,
			Consumer:       w.cfg.Consumer,
			List: func(ctx, stop context.Context, storedAt time.Time) (got []kalshi.APIKey, err error) {
				err = w.call(ctx, stop, storedAt, func(ctx context.Context) error {
					got, err = w.del.ListAPIKeys(ctx)
					return err
				}, func(error) {})
				return got, err
			},
			Stopped: errStopped,
			CutOff:  w.gate().CutOff,
			AckWait: w.leaseLength,
			Logger:  w.cfg.Logger,
		})
	})
	return w.fleet
}

// listed returns keyID as the fleet's account listing showed it no longer
// than a moment ago, nil when it is not listed (fleet.Replica.Listed).
func (w *Worker) listed(ctx, stop context.Context, storedAt time.Time, keyID string) (*kalshi.APIKey, error) {
	return w.replica().Listed(ctx, stop, storedAt, keyID)
}
