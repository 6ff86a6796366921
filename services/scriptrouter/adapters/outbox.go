package adapters

import (
	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Source is the ce-source of every event the script router emits.
const Source = topology.ServiceSourcePrefix + "scriptrouter"

// OutboxConfig says how events are stamped.
type OutboxConfig struct {
	// NewID returns a fresh ce-id (bus.NewID if nil).
	NewID func() string
}

// outbox emits the router's events in the transaction's outbox: binary
// CloudEvents with ce-subject = the SE id and the SP request's correlation id.
type outbox struct {
	tx  *bus.Tx
	cfg OutboxConfig
}

func (o outbox) DeliverToMNO(mno, correlationID string, d events.MNODeliver) error {
	return o.emit(topology.MNODeliver(mno, d.SEID), events.TypeMNODeliver, d.SEID, correlationID, d)
}

func (o outbox) CompleteScript(correlationID string, c events.ScriptCompleted) error {
	return o.emit(topology.ScriptCompleted(c.SEID), events.TypeScriptCompleted, c.SEID, correlationID, c)
}

func (o outbox) emit(subject, ceType, seID, correlationID string, data any) error {
	newID := o.cfg.NewID
	if newID == nil {
		newID = bus.NewID
	}
	ev, err := bus.NewEvent(newID(), Source, ceType, seID, data)
	if err != nil {
		return err
	}
	if correlationID != "" {
		ev.SetExtension(bus.ExtCorrelationID, correlationID)
	}
	return o.tx.Emit(subject, ev)
}
