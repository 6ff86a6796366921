package domain

import (
	"time"

	"github.com/tsmhub/tsmhub/pkg/events"
)

// The content model: what the conversation service (the system of record of
// SP SDs and service instances) last reported of each SP's content on an SE,
// and the last audit of the card. The registry keeps it for look-ups
// (get-se-data, GET /v1/ses/{seId}), for the pre-checks of SP operations and
// to know which SPs are present on an SE; it never holds key values.

// ContentSD is an SP security domain on an SE.
type ContentSD struct {
	AID        string
	LifeCycle  string
	KeyVersion int
	// KeysHeldBy is "central" (temporary keys) or "sp" (rotated by the SP).
	KeysHeldBy string
	// CreatedByCentral is true for SDs pre-personalize created.
	CreatedByCentral bool
}

// ContentInstance is a service instance on an SE.
type ContentInstance struct {
	ServiceNumber  string
	ServiceVersion string
	InstanceAID    string
	State          string
	Reason         string
}

// SPContent is one SP's content on one SE.
type SPContent struct {
	SPID      string
	SD        *ContentSD
	Instances []ContentInstance
	// ChangedAt is when the conversation service took the snapshot.
	ChangedAt time.Time
	// Seq is the stream sequence of the snapshot applied; 0 when none was.
	Seq uint64
	// PendingSince is set when the registry passed a pre-personalize of this
	// SP to the conversation service and no snapshot taken after that time
	// has arrived yet: the SP has a service being deployed on the SE.
	PendingSince time.Time
}

// Present reports whether the SP has an SD or an instance on the SE, or a
// service being deployed there.
func (c SPContent) Present() bool {
	return c.SD != nil || len(c.Instances) > 0 || !c.PendingSince.IsZero()
}

// Instance returns the SP's instance of service number/version, if any.
func (c SPContent) Instance(number, version string) (ContentInstance, bool) {
	for _, in := range c.Instances {
		if in.ServiceNumber == number && in.ServiceVersion == version {
			return in, true
		}
	}
	return ContentInstance{}, false
}

// Service instance states the registry reasons about (DESIGN.md section 4).
const (
	InstanceStateNotDeployed = "not-deployed"
	InstanceStateInError     = "in-error"
)

// Deployed reports whether an instance in state is on the card and in use:
// anything but not-deployed and in-error (a pre-personalize of an in-error
// instance starts over).
func Deployed(state string) bool {
	return state != "" && state != InstanceStateNotDeployed && state != InstanceStateInError
}

// AuditEntry is one GET STATUS record of an audit.
type AuditEntry struct {
	AID            string
	Kind           string
	LifeCycle      string
	SecurityDomain string
	Privileges     string
}

// Audit is what the last audit of an SE read from the card.
type Audit struct {
	ProcedureID string
	Entries     []AuditEntry
	AuditedAt   time.Time
	// Seq is the stream sequence of the audit's content event.
	Seq uint64
}

// Procedure kinds the registry asks the conversation service to run, and the
// operations of operator procedures (their request has no SP): the wire
// values of pkg/events, named here for the use cases.
const (
	ProcedurePrePersonalize = events.ProcedurePrePersonalize
	ProcedureActivate       = events.ProcedureActivate
	ProcedureSuspend        = events.ProcedureSuspend
	ProcedureResume         = events.ProcedureResume
	ProcedureTerminate      = events.ProcedureTerminate
	ProcedureGetState       = events.ProcedureGetState
	ProcedureLockSE         = events.ProcedureLockSE
	ProcedureUnlockSE       = events.ProcedureUnlockSE
	ProcedureAudit          = events.ProcedureAudit

	OpSEStatus = events.OpSEStatus
	OpAudit    = events.OpAudit
)

// ServiceQualifier is an SP's optional qualifier of a service.
type ServiceQualifier struct {
	SPName string
	PRN    string
}

// ProcedureRequest asks the conversation service to run a procedure on an SE.
type ProcedureRequest struct {
	Kind string
	// SPID, RequestID and Op identify the request: the SP's for SP
	// operations; SPID "", an operation id and OpSEStatus or OpAudit for the
	// operator's.
	SPID      string
	RequestID string
	Op        string
	SE        SE
	MNO       MNO
	// Service is the catalog entry (SP operations only).
	Service   *Service
	Qualifier *ServiceQualifier
	// SecurityDomainAID is the SP's SD AID (SP operations only).
	SecurityDomainAID string
	// SEStatus is the new status of lock-se and unlock-se.
	SEStatus   SEStatus
	ReceivedAt time.Time
	ValidUntil time.Time
}
