package domain

import (
	"sort"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

// Instance is an SP's instance of a catalog service on one SE: the system of
// record of its life-cycle state (docs/content-management.md). A terminated
// instance is removed; asking for it answers not-deployed.
type Instance struct {
	SEID             string                     `json:"seId"`
	SPID             string                     `json:"spId"`
	ServiceID        contract.ServiceID         `json:"serviceId"`
	ServiceQualifier *contract.ServiceQualifier `json:"serviceQualifier,omitempty"`
	InstanceAID      string                     `json:"instanceAid"`
	// SDAID is the SP SD the instance was extradited into.
	SDAID string `json:"sdAid"`
	State string `json:"state"`
	// StateBeforeSuspension is what resume-service (or unlock-se) returns to.
	StateBeforeSuspension string `json:"stateBeforeSuspension,omitempty"`
	// LockedBySE is set when lock-se (lost, stolen) suspended the instance:
	// only unlock-se (found) resumes it.
	LockedBySE bool `json:"lockedBySe,omitempty"`
	// Reason says why the instance is in-error or suspended.
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Deployed reports whether the instance exists on the card as far as the
// central TSM knows (every recorded state but not-deployed).
func (i *Instance) Deployed() bool { return i != nil && i.State != contract.StateNotDeployed }

// SecurityDomain is an SP security domain on one SE. The central TSM never
// holds its keys itself: KeysHeldBy says whether the script router still
// holds the temporary keys (central) or the SP rotated them (sp).
type SecurityDomain struct {
	SEID       string `json:"seId"`
	AID        string `json:"aid"`
	SPID       string `json:"spId"`
	KeyVersion int    `json:"keyVersion"`
	KeysHeldBy string `json:"keysHeldBy"`
	// CreatedByCentral is true for SDs pre-personalize created; false for
	// pre-issued SDs (their keys went to the SP out of band).
	CreatedByCentral bool      `json:"createdByCentral"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

// Content is what the central TSM knows of one SE: its instances and SP SDs
// (every SP), plus the SP SDs the card was issued with.
type Content struct {
	Instances []Instance
	SDs       []SecurityDomain
	PreIssued []events.PreIssuedSD
}

// SameAID compares AIDs in hex, whatever the case.
func SameAID(a, b string) bool { return strings.EqualFold(a, b) }

// Instance returns the SP's instance of service svc, or nil.
func (c Content) Instance(spID string, svc contract.ServiceID) *Instance {
	for i := range c.Instances {
		x := &c.Instances[i]
		if x.SPID == spID && x.ServiceID == svc {
			return x
		}
	}
	return nil
}

// InstancesOf returns the SP's instances, in a stable order.
func (c Content) InstancesOf(spID string) []Instance {
	var out []Instance
	for _, x := range c.Instances {
		if x.SPID == spID {
			out = append(out, x)
		}
	}
	return out
}

// SD returns the SD record with aid, or nil.
func (c Content) SD(aid string) *SecurityDomain {
	for i := range c.SDs {
		if SameAID(c.SDs[i].AID, aid) {
			return &c.SDs[i]
		}
	}
	return nil
}

// SDOf returns the SP's SD: its record, else a pre-issued SD of the SP (as
// an SD whose keys the SP holds), else nil.
func (c Content) SDOf(spID string) *SecurityDomain {
	for i := range c.SDs {
		if c.SDs[i].SPID == spID {
			return &c.SDs[i]
		}
	}
	for _, p := range c.PreIssued {
		if p.SPID == spID {
			return &SecurityDomain{AID: strings.ToUpper(p.AID), SPID: spID, KeyVersion: PreIssuedKeyVersion,
				KeysHeldBy: events.KeysHeldBySP}
		}
	}
	return nil
}

// PreIssuedKeyVersion is the KVN the card factory gives pre-issued SP SDs
// (card.KVNIssuer).
const PreIssuedKeyVersion = 0x30

// TemporaryKeyVersion is the KVN of the temporary keys of an SD that
// pre-personalize creates (docs/content-management.md).
const TemporaryKeyVersion = 0x30

// SPs lists every SP with an SD or an instance on the SE, sorted.
func (c Content) SPs() []string {
	seen := map[string]bool{}
	for _, x := range c.Instances {
		seen[x.SPID] = true
	}
	for _, s := range c.SDs {
		seen[s.SPID] = true
	}
	for _, p := range c.PreIssued {
		seen[p.SPID] = true
	}
	delete(seen, "")
	out := make([]string, 0, len(seen))
	for sp := range seen {
		out = append(out, sp)
	}
	sort.Strings(out)
	return out
}

// Snapshot is the ContentChanged event of one SP after a change: its SD and
// all its instances on the SE.
func (c Content) Snapshot(seID, spID string, now time.Time) events.ContentChanged {
	cc := events.ContentChanged{SEID: seID, SPID: spID, Services: []events.InstanceContent{}, ChangedAt: now}
	if sd := c.SDOf(spID); sd != nil {
		cc.SecurityDomain = &events.SDContent{AID: strings.ToUpper(sd.AID), LifeCycle: SDLifeCyclePersonalized,
			KeyVersion: sd.KeyVersion, KeysHeldBy: sd.KeysHeldBy, CreatedByCentral: sd.CreatedByCentral}
	}
	for _, x := range c.InstancesOf(spID) {
		cc.Services = append(cc.Services, events.InstanceContent{ServiceID: x.ServiceID,
			InstanceAID: strings.ToUpper(x.InstanceAID), State: x.State, Reason: x.Reason})
	}
	return cc
}

// SDLifeCyclePersonalized is the life cycle of every SP SD the central TSM
// records: created, given keys (PERSONALIZED, GPC 5.3.2) and not locked.
const SDLifeCyclePersonalized = "personalized"

// Apply returns the content after an outcome's changes (instances saved or
// removed, SDs saved or removed), instances and SDs sorted by key.
func (c Content) Apply(o Outcome) Content {
	inst := map[string]Instance{}
	for _, x := range c.Instances {
		inst[x.key()] = x
	}
	for _, ch := range o.Instances {
		if ch.After == nil {
			delete(inst, ch.Before.key())
		} else {
			inst[ch.After.key()] = *ch.After
		}
	}
	sds := map[string]SecurityDomain{}
	for _, s := range c.SDs {
		sds[strings.ToUpper(s.AID)] = s
	}
	for _, ch := range o.SDs {
		if ch.Removed {
			delete(sds, strings.ToUpper(ch.SD.AID))
		} else {
			sds[strings.ToUpper(ch.SD.AID)] = ch.SD
		}
	}
	out := Content{PreIssued: c.PreIssued}
	for _, k := range sortedKeys(inst) {
		out.Instances = append(out.Instances, inst[k])
	}
	for _, k := range sortedKeys(sds) {
		out.SDs = append(out.SDs, sds[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// key identifies an instance on its SE: SP and service.
func (i Instance) key() string { return i.SPID + "/" + i.ServiceID.Number + "/" + i.ServiceID.Version }

// Personalize applies the end of an SP's successful personalization
// conversation with targetAID: its installed instances targeted (targetAid is
// the instance AID, or the SP's SD AID: all its installed instances on the
// SE) become personalized. It returns the changes.
func Personalize(c Content, spID, targetAID string, now time.Time) []InstanceChange {
	var out []InstanceChange
	for _, x := range c.InstancesOf(spID) {
		if x.State != contract.StateInstalled {
			continue
		}
		if !SameAID(x.InstanceAID, targetAID) && !SameAID(x.SDAID, targetAID) {
			continue
		}
		before := x
		after := x
		after.State = contract.StatePersonalized
		after.Reason = ""
		after.UpdatedAt = now
		out = append(out, InstanceChange{Before: &before, After: &after, Cause: CausePersonalization})
	}
	return out
}

// RotateKeys applies a key rotation the script router reported for an SD in
// an SP's conversation: the SP holds the keys now. An SD the central TSM has
// no record of (a pre-issued one) gets a record.
func RotateKeys(c Content, seID, spID string, r events.KeyRotation, now time.Time) SDChange {
	sd := c.SD(r.SecurityDomainAID)
	var n SecurityDomain
	if sd != nil {
		n = *sd
	} else {
		n = SecurityDomain{SEID: seID, AID: strings.ToUpper(r.SecurityDomainAID), SPID: spID}
	}
	n.KeysHeldBy = events.KeysHeldBySP
	n.KeyVersion = r.KeyVersion
	n.UpdatedAt = now
	return SDChange{SD: n}
}

// Causes of instance state changes (ServiceStateChanged.Cause).
const (
	CausePersonalization = "end-conversation"
	CauseSEStatus        = "se-status"
)

// InstanceChange is one instance saved (After set) or removed (After nil).
type InstanceChange struct {
	Before *Instance
	After  *Instance
	// Cause is the operation or event behind the change.
	Cause string
}

// StateChanged reports whether the change is a state change SPs are
// notified of.
func (ch InstanceChange) StateChanged() bool { return ch.PreviousState() != ch.NewState() }

// PreviousState is the state before the change (not-deployed for a new instance).
func (ch InstanceChange) PreviousState() string {
	if ch.Before == nil {
		return contract.StateNotDeployed
	}
	return ch.Before.State
}

// NewState is the state after the change (not-deployed for a removed instance).
func (ch InstanceChange) NewState() string {
	if ch.After == nil {
		return contract.StateNotDeployed
	}
	return ch.After.State
}

// Subject is the instance the change is about.
func (ch InstanceChange) Subject() Instance {
	if ch.After != nil {
		return *ch.After
	}
	return *ch.Before
}

// Notification is the service-state-changed notification of a state change.
func (ch InstanceChange) Notification(now time.Time) contract.ServiceStateChanged {
	x := ch.Subject()
	reason := ""
	if ch.After != nil {
		reason = ch.After.Reason
	}
	return contract.ServiceStateChanged{SEID: x.SEID, SPID: x.SPID, ServiceID: x.ServiceID,
		ServiceQualifier: x.ServiceQualifier, InstanceAID: strings.ToUpper(x.InstanceAID), State: ch.NewState(),
		PreviousState: ch.PreviousState(), Cause: ch.Cause, Reason: reason, ChangedAt: now}
}

// SDChange is one SD record saved or removed.
type SDChange struct {
	SD      SecurityDomain
	Removed bool
}
