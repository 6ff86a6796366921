package ports

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
)

// Content handles the registry-content consumer (topology.RegistryContent):
// the conversation service's content snapshots (tsm.conv.<seId>.content,
// events.ContentChanged) feed the content model. Idempotent: the event is
// marked processed in the transaction that applies it, and a snapshot older
// (by stream sequence) than the stored one is ignored.
type Content struct {
	Store    *bus.Store
	Schemas  *bus.Schemas
	Registry *app.Registry
	Repo     *adapters.Repository
	Log      *slog.Logger
}

// Handle is the bus handler of topology.RegistryContent.
func (h *Content) Handle(_ context.Context, d *bus.Delivery) error {
	var c events.ContentChanged
	if err := d.DecodeAs(events.TypeContentChanged, &c); err != nil {
		return bus.Permanent(err)
	}
	if c.SEID == "" || c.SEID != d.Token(2) {
		return bus.Permanent(fmt.Errorf("content change of SE %q published on %s", c.SEID, d.Subject))
	}
	if err := h.Schemas.CheckEvent(d.Event, h.Log); err != nil {
		return bus.Permanent(fmt.Errorf("content change of SE %s: %w", c.SEID, err))
	}
	change := app.ContentChange{SEID: c.SEID, SPID: c.SPID, SD: adapters.SDFromContent(c.SecurityDomain),
		Instances: adapters.InstancesFromContent(c.Services), ChangedAt: c.ChangedAt}
	if c.Audit != nil {
		a := adapters.AuditFromCard(*c.Audit)
		change.Audit = &a
	}
	var applied, fresh bool
	err := h.Store.Update(func(tx *bus.Tx) error {
		applied = false
		var err error
		if fresh, err = tx.MarkProcessed(topology.RegistryContent.Name, d.Event.ID()); err != nil || !fresh {
			return err
		}
		applied, err = h.Registry.ApplyContent(h.Repo.InTx(tx), d.StreamSeq, change)
		return err
	})
	if e, ok := app.AsError(err); ok {
		return bus.Permanent(fmt.Errorf("content change of SE %s: %s", c.SEID, e.Message))
	}
	if err != nil {
		return err
	}
	switch {
	case !fresh:
		h.Log.Debug("duplicate content change ignored", "se", c.SEID, "sp", c.SPID, "eventId", d.Event.ID())
	case !applied:
		h.Log.Info("older content change ignored", "se", c.SEID, "sp", c.SPID, "seq", d.StreamSeq)
	case c.SPID == "":
		h.Log.Info("card audit applied", "se", c.SEID, "entries", len(c.Audit.Entries))
	default:
		h.Log.Info("content change applied", "se", c.SEID, "sp", c.SPID, "services", len(c.Services),
			"securityDomain", c.SecurityDomain != nil)
	}
	return nil
}
