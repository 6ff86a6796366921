package adapters

import (
	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// Source returns the ce-source of the events an adapter instance emits.
func Source(mnoID string) string { return topology.ServiceSourcePrefix + "mnoadapter-" + mnoID }

// OutboxConfig says how events are stamped.
type OutboxConfig struct {
	// MNOID names the instance in ce-source.
	MNOID string
	// NewID returns a fresh ce-id (bus.NewID if nil).
	NewID func() string
}

// outbox emits the adapter's events in the transaction's outbox: binary
// CloudEvents with ce-subject = the SE id and the SP request's correlation id.
type outbox struct {
	tx  *bus.Tx
	cfg OutboxConfig
}

func (o outbox) Execute(correlationID string, e events.SEExecute) error {
	return o.emit(topology.SEExecute(e.SEID), events.TypeSEExecute, e.SEID, correlationID, e)
}

func (o outbox) Executed(correlationID string, e events.SEExecuted) error {
	return o.emit(topology.SEExecuted(e.SEID), events.TypeSEExecuted, e.SEID, correlationID, e)
}

func (o outbox) emit(subject, ceType, seID, correlationID string, data any) error {
	newID := o.cfg.NewID
	if newID == nil {
		newID = bus.NewID
	}
	ev, err := bus.NewEvent(newID(), Source(o.cfg.MNOID), ceType, seID, data)
	if err != nil {
		return err
	}
	if correlationID != "" {
		ev.SetExtension(bus.ExtCorrelationID, correlationID)
	}
	return o.tx.Emit(subject, ev)
}
