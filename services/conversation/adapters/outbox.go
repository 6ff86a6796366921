package adapters

import (
	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/spport"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/conversation/app"
)

// Source is the ce-source of the internal events this service emits.
const Source = topology.ServiceSourcePrefix + "conversation"

// NotificationTypeExpired is the ce-type of the conversation-expired notification.
const NotificationTypeExpired = "tsm." + app.NotificationKindExpired + topology.NotificationTypeTail

// Outbox sends the service's messages through the transactional outbox of tx.
type Outbox struct {
	tx *bus.Tx
}

// Reply answers an SP request and remembers the answer under its request key.
func (o Outbox) Reply(req events.RequestRef, ceSubject string, body any) error {
	return spport.Reply(o.tx, req, ceSubject, body)
}

// Answered reports whether req has been answered already.
func (o Outbox) Answered(req events.RequestRef) (bool, error) {
	replies, err := o.tx.Replies(req.Key())
	return len(replies) > 0, err
}

// RequestScript emits events.ScriptRequested on the SE's script subject,
// correlated with the SP's send-script.
func (o Outbox) RequestScript(s events.ScriptRequested) error {
	ev, err := bus.NewEvent(bus.NewID(), Source, events.TypeScriptRequested, s.SEID, s)
	if err != nil {
		return err
	}
	ev.SetExtension(bus.ExtCorrelationID, s.Request.RequestID)
	return o.tx.Emit(topology.ScriptRequested(s.SEID), ev)
}

// NotifyExpired sends the SP a conversation-expired notification.
func (o Outbox) NotifyExpired(spID string, n app.ExpiredNotification) error {
	ev, err := bus.NewEvent(bus.NewID(), topology.CentralSource, NotificationTypeExpired, n.ConversationID, n)
	if err != nil {
		return err
	}
	return o.tx.Emit(topology.SPNotification(spID, app.NotificationKindExpired), ev)
}

// Notification ce-types of the content notifications.
var (
	NotificationTypeServiceState = "tsm." + contract.NotificationServiceStateChanged + topology.NotificationTypeTail
	NotificationTypeSEStatus     = "tsm." + contract.NotificationSEStatusChanged + topology.NotificationTypeTail
)

// NotifyServiceState sends the SP a service-state-changed notification
// (ce-subject: the SE).
func (o Outbox) NotifyServiceState(n contract.ServiceStateChanged) error {
	ev, err := bus.NewEvent(bus.NewID(), topology.CentralSource, NotificationTypeServiceState, n.SEID, n)
	if err != nil {
		return err
	}
	return o.tx.Emit(topology.SPNotification(n.SPID, contract.NotificationServiceStateChanged), ev)
}

// NotifySEStatus sends the SP an se-status-changed notification.
func (o Outbox) NotifySEStatus(n contract.SEStatusChanged) error {
	ev, err := bus.NewEvent(bus.NewID(), topology.CentralSource, NotificationTypeSEStatus, n.SEID, n)
	if err != nil {
		return err
	}
	return o.tx.Emit(topology.SPNotification(n.SPID, contract.NotificationSEStatusChanged), ev)
}

// PublishContent emits a ContentChanged for the registry's content model.
func (o Outbox) PublishContent(c events.ContentChanged) error {
	ev, err := bus.NewEvent(bus.NewID(), Source, events.TypeContentChanged, c.SEID, c)
	if err != nil {
		return err
	}
	return o.tx.Emit(topology.ContentChanged(c.SEID), ev)
}

// UnitOfWork is the app's view of one transaction.
type UnitOfWork struct {
	*Repository
	Outbox
}

// NewUnitOfWork returns the unit of work of tx.
func NewUnitOfWork(tx *bus.Tx) *UnitOfWork {
	return &UnitOfWork{Repository: NewRepository(tx.Tx), Outbox: Outbox{tx: tx}}
}

var _ app.UnitOfWork = (*UnitOfWork)(nil)
