package events

import (
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

// CloudEvents types of central content management (docs/content-management.md).
const (
	TypeProcedureRequested = "tsmhub.procedure.requested.v1"
	TypeContentChanged     = "tsmhub.content.changed.v1"
)

// Procedure kinds: the SP operations the conversation service runs as
// procedures, plus the operator's.
const (
	ProcedurePrePersonalize = "pre-personalize"
	ProcedureActivate       = "activate-service"
	ProcedureSuspend        = "suspend-service"
	ProcedureResume         = "resume-service"
	ProcedureTerminate      = "terminate-service"
	ProcedureGetState       = "get-service-state"
	// ProcedureLockSE locks every service instance on a lost or stolen SE.
	ProcedureLockSE = "lock-se"
	// ProcedureUnlockSE resumes them when the SE is found.
	ProcedureUnlockSE = "unlock-se"
	// ProcedureAudit reads the card's content (GET STATUS) through the central SD.
	ProcedureAudit = "audit"
)

// OpSEStatus is the RequestRef.Op of operator procedures started by
// POST /v1/ses/{seId}/status; OpAudit of POST /v1/ses/{seId}/audit. Their
// RequestRef.SPID is empty: no SP is answered, SPs are notified instead.
const (
	OpSEStatus = "se-status"
	OpAudit    = "audit"
)

// ProcedureRequested asks the conversation service to run a procedure on an
// SE the registry resolved and found eligible (tsm.conv.<seId>.procedure).
type ProcedureRequested struct {
	// Request is the SP request (pre-personalize, activate-service, ...) or,
	// for operator procedures, {SPID: "", RequestID: <operation id>, Op: OpSEStatus|OpAudit}.
	Request RequestRef `json:"request"`
	// Kind is one of the Procedure* constants.
	Kind string    `json:"kind"`
	SE   SERecord  `json:"se"`
	MNO  MNORecord `json:"mno"`
	// Service is the catalog entry (SP procedures only).
	Service *ServiceRecord `json:"service,omitempty"`
	// ServiceQualifier is the SP's, echoed in answers and notifications.
	ServiceQualifier *contract.ServiceQualifier `json:"serviceQualifier,omitempty"`
	// SecurityDomainAID is the SP's SD AID (from its registry record).
	SecurityDomainAID string `json:"securityDomainAid,omitempty"`
	// SEStatus is the new SE status of lock-se/unlock-se (lost, stolen, found).
	SEStatus string `json:"seStatus,omitempty"`
	// ReceivedAt is when the request reached the bus.
	ReceivedAt time.Time `json:"receivedAt"`
	// ValidUntil is zero when the request set no validitySeconds.
	ValidUntil time.Time `json:"validUntil,omitempty"`
}

// ProcedureScript marks a ScriptRequested as one step of a central TSM
// procedure: the router runs it in its own SCP03 session with
// SecurityDomainAID (the card's central SD, keys diversified from the issuer
// master key), skips SP authorization, and returns plain R-APDUs.
type ProcedureScript struct {
	ProcedureID string `json:"procedureId"`
	// Step names the step (logs, tail).
	Step string `json:"step"`
	// SecurityDomainAID is the SD the router opens its session with.
	SecurityDomainAID string `json:"securityDomainAid"`
	// TemporaryKeys asks the router to create fresh temporary keys for a new
	// SP SD and to append a PUT KEY carrying them as the script's last command.
	TemporaryKeys *TemporaryKeysRequest `json:"temporaryKeys,omitempty"`
}

// TemporaryKeysRequest names the SP SD that gets temporary keys.
type TemporaryKeysRequest struct {
	SPID              string `json:"spId"`
	SecurityDomainAID string `json:"securityDomainAid"`
	KeyVersion        int    `json:"keyVersion"`
}

// KeyRotation reports that an SP replaced the keys of its SD with PUT KEY in
// an end-to-end script: the router erased its copy of the temporary keys.
type KeyRotation struct {
	SecurityDomainAID string `json:"securityDomainAid"`
	KeyVersion        int    `json:"keyVersion"`
}

// Key custody of an SP SD.
const (
	// KeysHeldByCentral: the central TSM holds the SD's (temporary) keys.
	KeysHeldByCentral = "central"
	// KeysHeldBySP: the SP rotated them; the central TSM holds nothing.
	KeysHeldBySP = "sp"
)

// SDContent is an SP security domain in the content model.
type SDContent struct {
	AID        string `json:"aid"`
	LifeCycle  string `json:"lifeCycle"`
	KeyVersion int    `json:"keyVersion"`
	KeysHeldBy string `json:"keysHeldBy"`
	// CreatedByCentral is true for SDs pre-personalize created (false for pre-issued ones).
	CreatedByCentral bool `json:"createdByCentral"`
}

// InstanceContent is a service instance in the content model.
type InstanceContent struct {
	ServiceID   contract.ServiceID `json:"serviceId"`
	InstanceAID string             `json:"instanceAid"`
	State       string             `json:"state"`
	Reason      string             `json:"reason,omitempty"`
}

// CardEntry is one GET STATUS record of an audit.
type CardEntry struct {
	AID string `json:"aid"`
	// Kind: "isd", "sd", "app", "elf".
	Kind           string `json:"kind"`
	LifeCycle      string `json:"lifeCycle"`
	SecurityDomain string `json:"securityDomain,omitempty"`
	Privileges     string `json:"privileges,omitempty"`
}

// CardAudit is what GET STATUS through the central SD showed.
type CardAudit struct {
	ProcedureID string      `json:"procedureId"`
	Entries     []CardEntry `json:"entries"`
	AuditedAt   time.Time   `json:"auditedAt"`
}

// ContentChanged is the conversation service's snapshot of one SP's content
// on an SE after a procedure or a personalization changed it
// (tsm.conv.<seId>.content); the registry applies the newest per (SE, SP).
// An audit has an empty SPID and carries Audit.
type ContentChanged struct {
	SEID           string            `json:"seId"`
	SPID           string            `json:"spId,omitempty"`
	SecurityDomain *SDContent        `json:"securityDomain,omitempty"`
	Services       []InstanceContent `json:"services"`
	Audit          *CardAudit        `json:"audit,omitempty"`
	ChangedAt      time.Time         `json:"changedAt"`
}
