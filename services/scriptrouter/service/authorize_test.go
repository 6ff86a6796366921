package service_test

import (
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// inConversation returns a request for a script of conversation conv.
func inConversation(seID, conv, scriptID string, commands ...string) events.ScriptRequested {
	r := requested(seID, scriptID, commands...)
	r.ConversationID = conv
	return r
}

// refused waits for the ScriptCompleted of a script refused by authorization
// and checks it was not routed; index -1 means the whole script is at fault
// (no failed entry).
func (e *env) refused(req events.ScriptRequested, index int, message string) {
	e.t.Helper()
	c := decodeCompleted(e.t, e.waitFor(topology.ScriptCompleted(req.SEID), 1, forScript(req.ScriptID))[0])
	r := c.Response
	if r.Status != contract.StatusFailed || r.Error == nil || r.Error.Code != contract.CodeNotAllowed ||
		!strings.HasPrefix(r.Error.Message, message) {
		e.t.Errorf("%s: response %s %+v, want Failed NOT_ALLOWED %q", req.ScriptID, r.Status, r.Error, message)
	}
	if index < 0 && len(r.Failed) != 0 || index >= 0 && (len(r.Failed) != 1 || r.Failed[0].Index != index) {
		e.t.Errorf("%s: failed %+v, want command %d", req.ScriptID, r.Failed, index)
	}
	if got := e.matching(topology.MNODeliver(mno, req.SEID), forScript(req.ScriptID)); len(got) != 0 {
		e.t.Errorf("%s: a refused script was routed to the MNO", req.ScriptID)
	}
}

func TestScriptAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	const se = "0B01"
	putKey := "80D8010103AABBCC"

	// Another SP's SD: refused, nothing reaches the MNO.
	other := requested(se, "s-other-sd", "00A4040007"+transitSD+"00", getData)
	e.request(other)
	e.refused(other, 0, "command 0: SELECT of an AID that is not sp-bank's security domain or one of its service instances")

	// PUT KEY with the ISD selected (a reset card): refused.
	isd := requested(se, "s-isd-putkey", putKey)
	e.request(isd)
	e.refused(isd, 0, "command 0: PUT KEY on logical channel 0 is only allowed with sp-bank's security domain selected")

	// The own SD selected by the first script of a conversation stays
	// selected for its second script.
	e.routeAndDeliver(inConversation(se, "conv-keys", "s-keys-1", selectSD, "8050300008010203040506070800"))
	e.routeAndDeliver(inConversation(se, "conv-keys", "s-keys-2", putKey))
	// A script refused leaves the state unchanged; selecting the instance
	// (projected from the catalog entry) then refuses PUT KEY.
	e.routeAndDeliver(inConversation(se, "conv-keys", "s-keys-3", "00A4040007"+bankInstance, getData))
	inst := inConversation(se, "conv-keys", "s-keys-4", putKey)
	e.request(inst)
	e.refused(inst, 0, "command 0: PUT KEY on logical channel 0")

	// A new conversation starts from a reset card.
	fresh := inConversation(se, "conv-fresh", "s-fresh", putKey)
	e.request(fresh)
	e.refused(fresh, 0, "command 0: PUT KEY")
}

func TestProjectionFollowsTheRegistry(t *testing.T) {
	e := newEnv(t, nil)
	const se, seOther = "0B02", "0B03"
	const newSD, preIssued = "A000000555BB01", "A000000555CC01"

	// The SP moves its SD: the new AID is allowed, the old one no longer.
	e.publishRecord(topology.RegistrySP("sp-bank"), events.TypeRegistrySP,
		events.SPRecord{SPID: "sp-bank", Name: "Bank", SecurityDomainAID: newSD})
	e.routeAndDeliver(requested(se, "s-new-sd", "00A4040007"+newSD+"00", "80D8010103AABBCC"))
	old := requested(se, "s-old-sd", selectSD)
	e.request(old)
	e.refused(old, 0, "command 0: SELECT of an AID")

	// An SD pre-issued for the SP on one SE is its SD on that SE only.
	e.publishRecord(topology.RegistrySE(se), events.TypeRegistrySE, events.SERecord{SEID: se, MSI: "+4915100000099",
		MSIType: "MSISDN", MNO: mno, SEType: "UICC", Configuration: "uicc", Status: "active",
		PreIssuedSPDomains: []events.PreIssuedSD{{SPID: "sp-bank", AID: preIssued}}})
	e.routeAndDeliver(requested(se, "s-pre", "00A4040007"+preIssued, "80D8010103AABBCC"))
	elsewhere := requested(seOther, "s-pre-elsewhere", "00A4040007"+preIssued)
	e.request(elsewhere)
	e.refused(elsewhere, 0, "command 0: SELECT of an AID")

	// An SP the registry never told the router about is refused.
	unknown := requested(se, "s-unknown-sp", selectSD)
	unknown.Request.SPID = "sp-ghost"
	e.request(unknown)
	e.refused(unknown, -1, "the central TSM has no registry record of SP sp-ghost")

	if got := e.matching(topology.DeadLetter("scriptrouter", topology.ScriptRouterRegistry.Name), nil); len(got) != 0 {
		t.Errorf("registry records were dead-lettered: %d", len(got))
	}
}

func TestMismatchedRegistryRecordIsDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	// sp-transit's record on sp-bank's subject would give sp-bank transit's SD.
	e.publish(topology.RegistrySP("sp-bank"), events.TypeRegistrySP, "reg-wrong", "",
		events.SPRecord{SPID: "sp-transit", Name: "Transit", SecurityDomainAID: transitSD})
	m := e.waitFor(topology.DeadLetter("scriptrouter", topology.ScriptRouterRegistry.Name), 1, nil)[0]
	if reason := m.Headers().Get(bus.HeaderDLQReason); !strings.Contains(reason, "tsm.reg.sp.sp-bank") {
		t.Errorf("reason %q: want the subject", reason)
	}
	// sp-bank's own SD is still its SD.
	e.routeAndDeliver(requested("0B04", "s-still-own", selectSD))
}
