// Package events defines the payloads of tsmhub's internal events: the steps
// a request takes between services and the registry's records. Each type has
// a CloudEvents type name (versioned) and a JSON Schema in schemas/.
//
// Records carry no key values: the registry keeps SP key-transport keys to
// itself and the card simulator keeps card keys to itself.
package events

import (
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

// CloudEvents types of internal events.
const (
	TypeRegistrySE      = "tsmhub.registry.se.v1"
	TypeRegistryMNO     = "tsmhub.registry.mno.v1"
	TypeRegistrySP      = "tsmhub.registry.sp.v1"
	TypeRegistryService = "tsmhub.registry.service.v1"
	TypeConvBegin       = "tsmhub.conversation.begin.v1"
	TypeScriptRequested = "tsmhub.script.requested.v1"
	TypeScriptCompleted = "tsmhub.script.completed.v1"
	TypeMNODeliver      = "tsmhub.mno.deliver.v1"
	TypeSEExecute       = "tsmhub.se.execute.v1"
	TypeSEExecuted      = "tsmhub.se.executed.v1"
)

// RequestRef identifies the SP request a step belongs to.
type RequestRef struct {
	// SPID of the requesting SP.
	SPID string `json:"spId"`
	// RequestID is the request's ce-id (the SP's function call identifier).
	RequestID string `json:"requestId"`
	// Op is the public operation.
	Op string `json:"op"`
}

// Key is the idempotency key of the request: unique per SP.
func (r RequestRef) Key() string { return r.SPID + "/" + r.RequestID }

// SERecord is the registry's record of an SE (no keys).
type SERecord struct {
	SEID               string    `json:"seId"`
	MSI                string    `json:"msi"`
	MSIType            string    `json:"msiType"`
	MNO                string    `json:"mno"`
	SEType             string    `json:"seType"`
	Configuration      string    `json:"configuration"`
	ProfileID          string    `json:"profileId"`
	GPVersion          string    `json:"gpVersion"`
	JavaCardVersion    string    `json:"javaCardVersion"`
	CertificationLevel string    `json:"certificationLevel"`
	ExpiresAt          time.Time `json:"expiresAt"`
	Status             string    `json:"status"`
	// PreIssuedSPDomains are SP SDs created on the card at issuance (demo data
	// set and SEs issued with SP SDs); the SP got their keys out of band.
	PreIssuedSPDomains []PreIssuedSD `json:"preIssuedSpDomains,omitempty"`
	UpdatedAt          time.Time     `json:"updatedAt"`
}

// PreIssuedSD is an SP security domain created at card issuance.
type PreIssuedSD struct {
	SPID string `json:"spId"`
	AID  string `json:"aid"`
}

// MNORecord is the registry's record of an MNO.
type MNORecord struct {
	MNOID             string `json:"mnoId"`
	Name              string `json:"name"`
	OTACarrier        string `json:"otaCarrier"`
	MaxAPDUsPerScript int    `json:"maxApdusPerScript"`
	LatencyMs         int    `json:"latencyMs"`
}

// SPRecord is the registry's record of an SP (its key-transport key stays in
// the registry).
type SPRecord struct {
	SPID              string `json:"spId"`
	Name              string `json:"name"`
	SecurityDomainAID string `json:"securityDomainAid"`
	// KeyTransportKeyWrapped is the SP's key-transport key, RFC 3394-wrapped
	// under the key-exchange key the registry shares with the script router
	// (pkg/keycustody): never the key in clear.
	KeyTransportKeyWrapped string `json:"keyTransportKeyWrapped,omitempty"`
}

// ServiceRecord is a catalog entry.
type ServiceRecord struct {
	Number        string `json:"number"`
	Version       string `json:"version"`
	SPID          string `json:"spId"`
	ELFAID        string `json:"elfAid"`
	ModuleAID     string `json:"moduleAid"`
	InstanceAID   string `json:"instanceAid"`
	InstallParams string `json:"installParams,omitempty"`
	// Eligibility of SEs for pre-personalize (empty: any). SETypes and
	// CertificationLevels match the SE record's seType and certificationLevel,
	// Configurations its configuration; MinGPVersion is the lowest gpVersion
	// (dotted numbers, compared number by number).
	SETypes             []string `json:"seTypes,omitempty"`
	Configurations      []string `json:"configurations,omitempty"`
	MinGPVersion        string   `json:"minGpVersion,omitempty"`
	CertificationLevels []string `json:"certificationLevels,omitempty"`
}

// ConversationBegin asks the conversation service to open a conversation on an
// SE the registry resolved.
type ConversationBegin struct {
	Request RequestRef                        `json:"request"`
	Params  contract.BeginConversationRequest `json:"params"`
	SE      SERecord                          `json:"se"`
	MNO     MNORecord                         `json:"mno"`
	// ReceivedAt is when the SP request reached the bus (validity checks).
	ReceivedAt time.Time `json:"receivedAt"`
	// ValidUntil is zero when the request set no validitySeconds.
	ValidUntil time.Time `json:"validUntil,omitempty"`
}

// ScriptRequested carries an accepted script to the script router.
type ScriptRequested struct {
	Request           RequestRef `json:"request"`
	ConversationID    string     `json:"conversationId"`
	ScriptID          string     `json:"scriptId"`
	SEID              string     `json:"seId"`
	MNO               string     `json:"mno"`
	TargetAID         string     `json:"targetAid"`
	Commands          []string   `json:"commands"`
	Securing          string     `json:"securing"`
	ContinueOnError   bool       `json:"continueOnError"`
	MaxAPDUsPerScript int        `json:"maxApdusPerScript"`
	MaxScriptBytes    int        `json:"maxScriptBytes"`
	ValidUntil        time.Time  `json:"validUntil,omitempty"`
	// Procedure is set on the central TSM's own scripts (never on an SP's).
	Procedure *ProcedureScript `json:"procedure,omitempty"`
}

// MNODeliver asks an MNO adapter to deliver APDUs to an SE over the air.
type MNODeliver struct {
	Request         RequestRef `json:"request"`
	ConversationID  string     `json:"conversationId"`
	ScriptID        string     `json:"scriptId"`
	SEID            string     `json:"seId"`
	Commands        []string   `json:"commands"`
	ContinueOnError bool       `json:"continueOnError"`
	ValidUntil      time.Time  `json:"validUntil,omitempty"`
}

// SEExecute asks the SE (the simulator) to run APDUs in order.
type SEExecute struct {
	Request         RequestRef `json:"request"`
	ConversationID  string     `json:"conversationId"`
	ScriptID        string     `json:"scriptId"`
	SEID            string     `json:"seId"`
	MNO             string     `json:"mno"`
	Commands        []string   `json:"commands"`
	ContinueOnError bool       `json:"continueOnError"`
}

// SEExecuted is the result of an SEExecute.
type SEExecuted struct {
	Request        RequestRef `json:"request"`
	ConversationID string     `json:"conversationId"`
	ScriptID       string     `json:"scriptId"`
	SEID           string     `json:"seId"`
	// Responses are the R-APDUs (data || SW) of the executed commands, in order.
	Responses []string `json:"responses"`
	// Error is set when the SE could not be reached or could not run the script.
	Error *contract.Error `json:"error,omitempty"`
}

// ScriptCompleted reports a script's outcome to the conversation service,
// which answers the SP.
type ScriptCompleted struct {
	Request        RequestRef                  `json:"request"`
	ConversationID string                      `json:"conversationId"`
	ScriptID       string                      `json:"scriptId"`
	SEID           string                      `json:"seId"`
	Response       contract.SendScriptResponse `json:"response"`
	// TemporaryKeys answers a ProcedureScript.TemporaryKeys: wrapped under the
	// SP's key-transport key, for the SP only.
	TemporaryKeys *contract.TemporaryKeys `json:"temporaryKeys,omitempty"`
	// KeysRotated lists the SP SDs whose keys the SP replaced in this script.
	KeysRotated []KeyRotation `json:"keysRotated,omitempty"`
}

// CommandSucceeded is the rule, shared by the card simulator (which stops a
// script at the first failure) and the script router (which reports
// failures), for whether a status word ends a command successfully: 9000,
// 61xx (more data available), 62xx (warning, state unchanged) and 6310 (GET
// STATUS more data). Everything else, 6300 (authentication failed) included,
// is a failure.
func CommandSucceeded(sw uint16) bool {
	switch sw >> 8 {
	case 0x90, 0x61, 0x62:
		return true
	}
	return sw == 0x6310
}
