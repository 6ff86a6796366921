package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// BucketContent: "<seId>/<spId>" -> storedContent JSON (one SP's content on
// an SE), and "<seId>/" -> storedAudit JSON (the SE's last audit). A
// projection of tsm.conv.*.content (rebuilt by replaying it), plus the
// pending pre-personalize marks the registry sets itself.
var BucketContent = []byte("registry.content")

func contentKey(seID, spID string) []byte { return []byte(seID + "/" + spID) }

// storedContent is the stored form of domain.SPContent: the snapshot in its
// event form, with the stream sequence it came from.
type storedContent struct {
	Seq          uint64                   `json:"seq"`
	SPID         string                   `json:"spId"`
	SD           *events.SDContent        `json:"securityDomain,omitempty"`
	Instances    []events.InstanceContent `json:"services"`
	ChangedAt    time.Time                `json:"changedAt"`
	PendingSince time.Time                `json:"pendingSince"`
}

type storedAudit struct {
	Seq   uint64           `json:"seq"`
	Audit events.CardAudit `json:"audit"`
}

// SDContent is the event form of a content model SD.
func SDContent(sd *domain.ContentSD) *events.SDContent {
	if sd == nil {
		return nil
	}
	return &events.SDContent{AID: sd.AID, LifeCycle: sd.LifeCycle, KeyVersion: sd.KeyVersion, KeysHeldBy: sd.KeysHeldBy,
		CreatedByCentral: sd.CreatedByCentral}
}

// SDFromContent is the domain form of an event's SD.
func SDFromContent(sd *events.SDContent) *domain.ContentSD {
	if sd == nil {
		return nil
	}
	return &domain.ContentSD{AID: sd.AID, LifeCycle: sd.LifeCycle, KeyVersion: sd.KeyVersion, KeysHeldBy: sd.KeysHeldBy,
		CreatedByCentral: sd.CreatedByCentral}
}

// InstanceContents is the event form of content model instances (never nil).
func InstanceContents(in []domain.ContentInstance) []events.InstanceContent {
	out := make([]events.InstanceContent, 0, len(in))
	for _, i := range in {
		out = append(out, events.InstanceContent{ServiceID: contract.ServiceID{Number: i.ServiceNumber, Version: i.ServiceVersion},
			InstanceAID: i.InstanceAID, State: i.State, Reason: i.Reason})
	}
	return out
}

// InstancesFromContent is the domain form of an event's instances.
func InstancesFromContent(in []events.InstanceContent) []domain.ContentInstance {
	var out []domain.ContentInstance
	for _, i := range in {
		out = append(out, domain.ContentInstance{ServiceNumber: i.ServiceID.Number, ServiceVersion: i.ServiceID.Version,
			InstanceAID: i.InstanceAID, State: i.State, Reason: i.Reason})
	}
	return out
}

// CardAudit is the event form of an audit.
func CardAudit(a domain.Audit) events.CardAudit {
	out := events.CardAudit{ProcedureID: a.ProcedureID, AuditedAt: a.AuditedAt, Entries: []events.CardEntry{}}
	for _, e := range a.Entries {
		out.Entries = append(out.Entries, events.CardEntry{AID: e.AID, Kind: e.Kind, LifeCycle: e.LifeCycle,
			SecurityDomain: e.SecurityDomain, Privileges: e.Privileges})
	}
	return out
}

// AuditFromCard is the domain form of an event's audit.
func AuditFromCard(a events.CardAudit) domain.Audit {
	out := domain.Audit{ProcedureID: a.ProcedureID, AuditedAt: a.AuditedAt}
	for _, e := range a.Entries {
		out.Entries = append(out.Entries, domain.AuditEntry{AID: e.AID, Kind: e.Kind, LifeCycle: e.LifeCycle,
			SecurityDomain: e.SecurityDomain, Privileges: e.Privileges})
	}
	return out
}

func (s storedContent) domain() domain.SPContent {
	return domain.SPContent{SPID: s.SPID, SD: SDFromContent(s.SD), Instances: InstancesFromContent(s.Instances),
		ChangedAt: s.ChangedAt, Seq: s.Seq, PendingSince: s.PendingSince}
}

func (t *tx) SPContent(seID, spID string) (domain.SPContent, bool, error) {
	var s storedContent
	found, err := t.get(BucketContent, string(contentKey(seID, spID)), &s)
	return s.domain(), found, err
}

func (t *tx) SEContent(seID string) ([]domain.SPContent, error) {
	var out []domain.SPContent
	prefix := contentKey(seID, "")
	c := t.btx.Bucket(BucketContent).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) == len(prefix) {
			continue // the audit
		}
		var s storedContent
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", BucketContent, k, err)
		}
		out = append(out, s.domain())
	}
	return out, nil
}

func (t *tx) Audit(seID string) (domain.Audit, bool, error) {
	var s storedAudit
	found, err := t.get(BucketContent, string(contentKey(seID, "")), &s)
	a := AuditFromCard(s.Audit)
	a.Seq = s.Seq
	return a, found, err
}

func (t *tx) put(bucket, key []byte, v any) error {
	if t.out == nil {
		return fmt.Errorf("write to %s in a read-only transaction", bucket)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.btx.Bucket(bucket).Put(key, b)
}

func (t *tx) SaveSPContent(seID string, c domain.SPContent) error {
	return t.put(BucketContent, contentKey(seID, c.SPID), storedContent{Seq: c.Seq, SPID: c.SPID, SD: SDContent(c.SD),
		Instances: InstanceContents(c.Instances), ChangedAt: c.ChangedAt, PendingSince: c.PendingSince})
}

func (t *tx) SaveAudit(seID string, a domain.Audit) error {
	return t.put(BucketContent, contentKey(seID, ""), storedAudit{Seq: a.Seq, Audit: CardAudit(a)})
}

// ProcedureRequested is the event form of a procedure request.
func ProcedureRequested(p domain.ProcedureRequest) events.ProcedureRequested {
	ev := events.ProcedureRequested{Request: events.RequestRef{SPID: p.SPID, RequestID: p.RequestID, Op: p.Op},
		Kind: p.Kind, SE: SERecord(p.SE), MNO: MNORecord(p.MNO), SecurityDomainAID: p.SecurityDomainAID,
		SEStatus: string(p.SEStatus), ReceivedAt: p.ReceivedAt, ValidUntil: p.ValidUntil}
	if p.Service != nil {
		rec := ServiceRecord(*p.Service)
		ev.Service = &rec
	}
	if q := p.Qualifier; q != nil {
		ev.ServiceQualifier = &contract.ServiceQualifier{SPName: q.SPName, PRN: q.PRN}
	}
	return ev
}

// RequestProcedure emits events.ProcedureRequested on the SE's procedure
// subject, correlated with the request id (the SP's ce-id or the operation id).
func (t *tx) RequestProcedure(p domain.ProcedureRequest) error {
	if t.out == nil {
		return fmt.Errorf("request procedure %s in a read-only transaction", p.Kind)
	}
	ev, err := bus.NewEvent(bus.NewID(), Source, events.TypeProcedureRequested, p.SE.ID, ProcedureRequested(p))
	if err != nil {
		return bus.Permanent(fmt.Errorf("encode procedure %s for SE %s: %w", p.Kind, p.SE.ID, err))
	}
	ev.SetExtension(bus.ExtCorrelationID, p.RequestID)
	return t.out.Emit(topology.ConversationProcedure(p.SE.ID), ev)
}

// NotificationTypeMSIChanged is the ce-type of msi-changed notifications.
const NotificationTypeMSIChanged = "tsm." + contract.NotificationMSIChanged + topology.NotificationTypeTail

// NotifyMSIChanged emits an msi-changed notification to SP spID.
func (t *tx) NotifyMSIChanged(spID string, se domain.SE, changedAt time.Time) error {
	if t.out == nil {
		return fmt.Errorf("notify SP %s in a read-only transaction", spID)
	}
	n := contract.MSIChanged{SPID: spID, SEID: se.ID, MSI: se.MSI, MSIType: se.MSIType, MNO: se.MNO, ChangedAt: changedAt}
	ev, err := bus.NewEvent(bus.NewID(), topology.CentralSource, NotificationTypeMSIChanged, se.ID, n)
	if err != nil {
		return err
	}
	return t.out.Emit(topology.SPNotification(spID, contract.NotificationMSIChanged), ev)
}
