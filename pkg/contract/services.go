package contract

import "time"

// Service instance states (DESIGN.md section 4). A terminated instance is
// removed; asking for it again answers not-deployed.
const (
	StateNotDeployed  = "not-deployed"
	StateInstalled    = "installed"
	StatePersonalized = "personalized"
	StateActive       = "active"
	StateSuspended    = "suspended"
	StateInError      = "in-error"
)

// ServiceRequest is the body of pre-personalize, activate-service,
// suspend-service, resume-service, terminate-service and get-service-state:
// one service of the catalog on one SE.
type ServiceRequest struct {
	Common
	SEID             string            `json:"seId"`
	MSI              string            `json:"msi,omitempty"`
	ServiceID        ServiceID         `json:"serviceId"`
	ServiceQualifier *ServiceQualifier `json:"serviceQualifier,omitempty"`
}

// TemporaryKeyAlgorithm is the only algorithm of temporary SD keys.
const TemporaryKeyAlgorithm = "AES-128"

// TemporaryKeys are the temporary SCP03 keys of an SP security domain created
// by pre-personalize, for the SP only: Wrapped is the hex of the RFC 3394 AES
// key wrap, under the SP's key-transport key, of ENC || MAC || DEK.
type TemporaryKeys struct {
	KeyVersion int    `json:"keyVersion"`
	Algorithm  string `json:"algorithm"`
	Wrapped    string `json:"wrapped"`
}

// PrePersonalizeResponse is the pre-personalize response.
type PrePersonalizeResponse struct {
	Result
	SEID              string         `json:"seId,omitempty"`
	ServiceID         *ServiceID     `json:"serviceId,omitempty"`
	SecurityDomainAID string         `json:"securityDomainAid,omitempty"`
	InstanceAID       string         `json:"instanceAid,omitempty"`
	TemporaryKeys     *TemporaryKeys `json:"temporaryKeys,omitempty"`
	State             string         `json:"state,omitempty"`
}

// ServiceStateResponse is the response of activate-service, suspend-service,
// resume-service, terminate-service and get-service-state.
type ServiceStateResponse struct {
	Result
	SEID        string     `json:"seId,omitempty"`
	ServiceID   *ServiceID `json:"serviceId,omitempty"`
	InstanceAID string     `json:"instanceAid,omitempty"`
	State       string     `json:"state,omitempty"`
	// Reason says why an instance is in-error or suspended.
	Reason string `json:"reason,omitempty"`
}

// Notification kinds (DESIGN.md section 4).
const (
	NotificationServiceStateChanged = "service-state-changed"
	NotificationSEStatusChanged     = "se-status-changed"
	NotificationMSIChanged          = "msi-changed"
	NotificationSEReplaced          = "se-replaced"
	NotificationConversationExpired = "conversation-expired"
)

// ServiceStateChanged is the body of tsm.service-state-changed.notification.
type ServiceStateChanged struct {
	SEID             string            `json:"seId"`
	SPID             string            `json:"spId"`
	ServiceID        ServiceID         `json:"serviceId"`
	ServiceQualifier *ServiceQualifier `json:"serviceQualifier,omitempty"`
	InstanceAID      string            `json:"instanceAid"`
	State            string            `json:"state"`
	PreviousState    string            `json:"previousState"`
	// Cause is the operation or event that changed the state (an op name,
	// "end-conversation", "se-status").
	Cause     string    `json:"cause"`
	Reason    string    `json:"reason,omitempty"`
	ChangedAt time.Time `json:"changedAt"`
}

// SE statuses of se-status-changed.
const (
	SEStatusActive = "active"
	SEStatusLost   = "lost"
	SEStatusStolen = "stolen"
	SEStatusFound  = "found"
	SEStatusLocked = "locked"
)

// SEStatusChanged is the body of tsm.se-status-changed.notification.
type SEStatusChanged struct {
	SPID           string    `json:"spId"`
	SEID           string    `json:"seId"`
	Status         string    `json:"status"`
	PreviousStatus string    `json:"previousStatus,omitempty"`
	ChangedAt      time.Time `json:"changedAt"`
}

// MSIChanged is the body of tsm.msi-changed.notification: the SE is now
// reached through another subscription.
type MSIChanged struct {
	SPID      string    `json:"spId"`
	SEID      string    `json:"seId"`
	MSI       string    `json:"msi"`
	MSIType   string    `json:"msiType"`
	MNO       string    `json:"mno"`
	ChangedAt time.Time `json:"changedAt"`
}
