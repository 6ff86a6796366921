package main

import (
	"encoding/json"
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
					ModuleAID: "A0000005550101", InstanceAID: instBank},
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
