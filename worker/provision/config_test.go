package provision_test

import (
	"reflect"
	"testing"

	"github.com/revoker/revoker/worker"
)

// worker.Config.Provisioning sets every field of provision.Config: one
// forgotten would reach JetStream as a zero (a stream without replicas, a
// consumer without an ack wait) or make Check demand the wrong thing.
func TestProvisioningSetsEveryField(t *testing.T) {
	c := worker.Config{Provision: true}.Provisioning()
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("worker.Config.Provisioning leaves %s unset", v.Type().Field(i).Name)
		}
	}
	if c.RequestsStream != worker.DefaultRequestsStream || c.Consumer != worker.DefaultConsumer || c.MaxRetry != worker.DefaultMaxRetry {
		t.Errorf("Provisioning of the zero Config: %+v, want the worker's defaults", c)
	}
}
