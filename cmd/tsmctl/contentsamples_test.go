package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// contentSample is one event of central content management as it sits in a
// stream: the samples feed the tail tests and are checked against the
// published schemas, so tsmctl, the Go types and schemas/ stay in step.
type contentSample struct {
	name    string
	subject string
	typ     string
	source  string
	data    any
}

const (
	seBlank   = "0100000000000005"
	sdBank    = "A000000555AA01"
	instBank  = "A000000555010101"
	centralSD = "A000000151000000"
	// wrappedSample is not a real wrap: tail must never print it.
	wrappedSample = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF0011223344556677"
)

func contentSamples() []contentSample {
	at := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	svc := contract.ServiceID{Number: "1", Version: "1"}
	se := events.SERecord{SEID: seBlank, MSI: "+4915100000005", MSIType: "MSISDN", MNO: "mno-a", SEType: "eSE",
		Configuration: "embedded", ProfileID: "demo-profile-1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5",
		CertificationLevel: "EMVCo", ExpiresAt: at.AddDate(10, 0, 0), Status: "active", UpdatedAt: at}
	mno := events.MNORecord{MNOID: "mno-a", Name: "Demo MNO A", OTACarrier: "https", MaxAPDUsPerScript: 32, LatencyMs: 20}
	req := events.RequestRef{SPID: "bank1", RequestID: "pp-1", Op: topology.OpPrePersonalize}
	return []contentSample{
		{"procedure pre-personalize", topology.ConversationProcedure(seBlank), events.TypeProcedureRequested, "registry",
			events.ProcedureRequested{Request: req, Kind: events.ProcedurePrePersonalize, SE: se, MNO: mno,
				Service: &events.ServiceRecord{Number: "1", Version: "1", SPID: "bank1", ELFAID: "A00000055501",
					ModuleAID: "A0000005550101", InstanceAID: instBank, SETypes: []string{"eSE", "UICC"}, MinGPVersion: "2.2.1"},
				ServiceQualifier: &contract.ServiceQualifier{PRN: "card-7"}, SecurityDomainAID: sdBank, ReceivedAt: at}},
		{"procedure lock-se (operator)", topology.ConversationProcedure(seBlank), events.TypeProcedureRequested, "registry",
			events.ProcedureRequested{Request: events.RequestRef{RequestID: "op-1", Op: events.OpSEStatus},
				Kind: events.ProcedureLockSE, SE: se, MNO: mno, SEStatus: contract.SEStatusLost, ReceivedAt: at}},
		{"procedure step create-sd", topology.ScriptRequested(seBlank), events.TypeScriptRequested, "conversation",
			events.ScriptRequested{Request: req, ConversationID: "proc-1", ScriptID: "proc-1-1", SEID: seBlank, MNO: "mno-a",
				TargetAID: centralSD, Commands: []string{"80E60C00"}, Securing: contract.SecuringCentral,
				MaxAPDUsPerScript: 32, MaxScriptBytes: 4096,
				Procedure: &events.ProcedureScript{ProcedureID: "proc-1", Step: "create-sd", SecurityDomainAID: centralSD,
					TemporaryKeys: &events.TemporaryKeysRequest{SPID: "bank1", SecurityDomainAID: sdBank, KeyVersion: 0x30}}}},
		{"step completed with temporary keys", topology.ScriptCompleted(seBlank), events.TypeScriptCompleted, "scriptrouter",
			events.ScriptCompleted{Request: req, ConversationID: "proc-1", ScriptID: "proc-1-1", SEID: seBlank,
				Response:      contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"9000", "9000"}},
				TemporaryKeys: &contract.TemporaryKeys{KeyVersion: 0x30, Algorithm: contract.TemporaryKeyAlgorithm, Wrapped: wrappedSample}}},
		{"script completed with key rotation", topology.ScriptCompleted(seBlank), events.TypeScriptCompleted, "scriptrouter",
			events.ScriptCompleted{Request: events.RequestRef{SPID: "bank1", RequestID: "ss-2", Op: topology.OpSendScript},
				ConversationID: "conv-9", ScriptID: "conv-9-2", SEID: seBlank,
				Response:    contract.SendScriptResponse{Result: contract.Success(), Responses: []string{"9000"}},
				KeysRotated: []events.KeyRotation{{SecurityDomainAID: sdBank, KeyVersion: 0x31}}}},
		{"content of bank1", topology.ContentChanged(seBlank), events.TypeContentChanged, "conversation",
			events.ContentChanged{SEID: seBlank, SPID: "bank1",
				SecurityDomain: &events.SDContent{AID: sdBank, LifeCycle: "PERSONALIZED", KeyVersion: 0x30,
					KeysHeldBy: events.KeysHeldByCentral, CreatedByCentral: true},
				Services:  []events.InstanceContent{{ServiceID: svc, InstanceAID: instBank, State: contract.StateInstalled}},
				ChangedAt: at}},
		{"content after terminate (no SD, nil services)", topology.ContentChanged(seBlank), events.TypeContentChanged, "conversation",
			events.ContentChanged{SEID: seBlank, SPID: "bank1", ChangedAt: at}},
		{"audit", topology.ContentChanged(seBlank), events.TypeContentChanged, "conversation",
			events.ContentChanged{SEID: seBlank, ChangedAt: at, Audit: &events.CardAudit{ProcedureID: "audit-1", AuditedAt: at,
				Entries: []events.CardEntry{{AID: "A000000151000000", Kind: "isd", LifeCycle: "SECURED"},
					{AID: sdBank, Kind: "sd", LifeCycle: "PERSONALIZED", SecurityDomain: "A000000151000000", Privileges: "80C000"}}}}},
		{"pre-personalize response", topology.SPResponse("bank1", topology.OpPrePersonalize), "tsm.pre-personalize.response", "",
			contract.PrePersonalizeResponse{Result: contract.Success(), SEID: seBlank, ServiceID: &svc, SecurityDomainAID: sdBank,
				InstanceAID: instBank, State: contract.StateInstalled,
				TemporaryKeys: &contract.TemporaryKeys{KeyVersion: 0x30, Algorithm: contract.TemporaryKeyAlgorithm, Wrapped: wrappedSample}}},
		{"suspend-service response", topology.SPResponse("bank1", topology.OpSuspendService), "tsm.suspend-service.response", "",
			contract.ServiceStateResponse{Result: contract.Success(), SEID: seBlank, ServiceID: &svc, InstanceAID: instBank,
				State: contract.StateSuspended, Reason: "suspended by the SP"}},
		{"service-state-changed", topology.SPNotification("bank1", contract.NotificationServiceStateChanged), "tsm.service-state-changed.notification", "",
			contract.ServiceStateChanged{SEID: seBlank, SPID: "bank1", ServiceID: svc, InstanceAID: instBank,
				State: contract.StateSuspended, PreviousState: contract.StateActive, Cause: "se-status", Reason: "SE reported lost", ChangedAt: at}},
		{"se-status-changed", topology.SPNotification("bank1", contract.NotificationSEStatusChanged), "tsm.se-status-changed.notification", "",
			contract.SEStatusChanged{SPID: "bank1", SEID: seBlank, Status: contract.SEStatusLost, PreviousStatus: contract.SEStatusActive, ChangedAt: at}},
		{"msi-changed", topology.SPNotification("bank1", contract.NotificationMSIChanged), "tsm.msi-changed.notification", "",
			contract.MSIChanged{SPID: "bank1", SEID: seBlank, MSI: "+4915100000099", MSIType: "MSISDN", MNO: "mno-b", ChangedAt: at}},
	}
}

// TestContentSamplesMatchSchemas: every sample, marshalled from the Go types
// as the services publish them, is valid under its published schema.
func TestContentSamplesMatchSchemas(t *testing.T) {
	schemas, err := bus.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range contentSamples() {
		if !schemas.Has(s.typ) {
			t.Errorf("%s: no schema for %s", s.name, s.typ)
			continue
		}
		b, err := json.Marshal(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.Validate(s.typ, b); err != nil {
			t.Errorf("%s: %v\n%s", s.name, err, b)
		}
	}
	// The schemas do check: an unknown procedure kind is refused.
	bad := contentSamples()[0].data.(events.ProcedureRequested)
	bad.Kind = "install-everything"
	b, _ := json.Marshal(bad)
	if schemas.Validate(events.TypeProcedureRequested, b) == nil {
		t.Error("procedure of an unknown kind passed its schema")
	}
}

// TestTailContentManagement: tail shows procedures, their card steps,
// content changes, service responses and notifications with what an operator
// needs, and never the temporary keys (wrapped or not).
func TestTailContentManagement(t *testing.T) {
	want := map[string][]string{
		"procedure pre-personalize":    {"TSM_STEPS", "se=" + seBlank, "sp=bank1", "proc=pre-personalize", "svc=1/1", "sd=" + sdBank},
		"procedure lock-se (operator)": {"se=" + seBlank, "proc=lock-se", "by=operator:se-status", "se-status=lost"},
		"procedure step create-sd": {"se=" + seBlank, "sp=bank1", "step=create-sd", "temp-keys=30:requested", "sd=" + sdBank,
			"cmds=1", "conv=proc-1"},
		"step completed with temporary keys":            {"se=" + seBlank, "status=Executed-Success", "resps=2", "temp-keys=30:wrapped"},
		"script completed with key rotation":            {"rotated=" + sdBank + ":31", "conv=conv-9"},
		"content of bank1":                              {"se=" + seBlank, "sp=bank1", "sd=" + sdBank, "keys=central", "instances=1"},
		"content after terminate (no SD, nil services)": {"se=" + seBlank, "sp=bank1", "instances=0"},
		"audit":                    {"se=" + seBlank, "instances=0", "audit-entries=2"},
		"pre-personalize response": {"TSM_RES", "sp=bank1", "se=" + seBlank, "svc=1/1", "instance=" + instBank, "sd=" + sdBank, "state=installed", "temp-keys=30:wrapped"},
		"suspend-service response": {"svc=1/1", "state=suspended", "status=Executed-Success"},
		"service-state-changed":    {"sp=bank1", "se=" + seBlank, "state=suspended", "prev=active", "cause=se-status"},
		"se-status-changed":        {"sp=bank1", "se=" + seBlank, "status=lost", "prev=active"},
		"msi-changed":              {"sp=bank1", "se=" + seBlank},
	}
	for i, s := range contentSamples() {
		stream := topology.StreamSteps.Name
		if strings.HasPrefix(s.subject, "tsm.sp.") {
			stream = topology.StreamResponses.Name
		}
		source := topology.CentralSource
		if s.source != "" {
			source = topology.ServiceSourcePrefix + s.source
		}
		h, body := encode(t, s.subject, fmt.Sprintf("ev-%d", i), source, s.typ, seBlank, "pp-1", s.data)
		l := summarize(stream, s.subject, h, body, uint64(i+1), msgTime)
		line := l.String()
		js, _ := json.Marshal(l)
		for _, w := range want[s.name] {
			if !strings.Contains(line, w) {
				t.Errorf("%s: line lacks %q:\n%s", s.name, w, line)
			}
		}
		if want[s.name] == nil {
			t.Errorf("%s: no expectation", s.name)
		}
		for _, out := range []string{line, string(js)} {
			if strings.Contains(out, wrappedSample[:16]) || strings.Contains(out, "+49151") {
				t.Errorf("%s: key material or an MSI printed: %s", s.name, out)
			}
		}
		if strings.Contains(line, "by=") != strings.Contains(s.name, "operator") {
			t.Errorf("%s: operator shown wrongly: %s", s.name, line)
		}
	}
}
