// Package contract is the public contract v1 between SP TSMs and tsmhub
// (DESIGN.md section 4): operation payloads, response statuses and error
// codes. JSON field names are the wire names; every request payload has a JSON
// Schema in schemas/ with the same shape.
package contract

import (
	"fmt"
	"time"
)

// Status is the GP System Messaging status of a response.
type Status string

// Response statuses.
const (
	StatusSuccess     Status = "Executed-Success"
	StatusWithWarning Status = "Executed-WithWarning"
	StatusFailed      Status = "Failed"
	StatusExpired     Status = "Expired"
)

// Code is an error code of the public contract.
type Code string

// Error codes (DESIGN.md section 4).
const (
	CodeInvalidArgument     Code = "INVALID_ARGUMENT"
	CodeNotFound            Code = "NOT_FOUND"
	CodeNotAllowed          Code = "NOT_ALLOWED"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeAlreadyExists       Code = "ALREADY_EXISTS"
	CodeConversationNotOpen Code = "CONVERSATION_NOT_OPEN"
	CodeConversationBusy    Code = "CONVERSATION_BUSY"
	CodeScriptTooLarge      Code = "SCRIPT_TOO_LARGE"
	CodeNoEligibleSE        Code = "NO_ELIGIBLE_SE"
	CodeSEInaccessible      Code = "SE_INACCESSIBLE"
	CodeSecureElementError  Code = "SECURE_ELEMENT_ERROR"
	CodeOverloadProtection  Code = "OVERLOAD_PROTECTION"
	CodeExpired             Code = "EXPIRED"
	CodeInternalError       Code = "INTERNAL_ERROR"
)

// Error is the error object of a response that is not a success. Message says
// what to fix; it never carries key values or personal data.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Result is embedded in every response body.
type Result struct {
	Status Status `json:"status"`
	Error  *Error `json:"error,omitempty"`
}

// Success is the Result of an executed request.
func Success() Result { return Result{Status: StatusSuccess} }

// Failure is the Result of a failed (or expired) request.
func Failure(err *Error) Result {
	if err.Code == CodeExpired {
		return Result{Status: StatusExpired, Error: err}
	}
	return Result{Status: StatusFailed, Error: err}
}

// Common is the optional part every request may carry.
type Common struct {
	// ValiditySeconds: a request not processed within this many seconds of its
	// ce-time (or of its arrival) ends Expired.
	ValiditySeconds int `json:"validitySeconds,omitempty"`
}

// MSI types.
const (
	MSITypeMSISDN = "MSISDN"
	MSITypeMDN    = "MDN"
)

// GetSEIDRequest is the get-se-id request.
type GetSEIDRequest struct {
	Common
	MSI     string `json:"msi"`
	MSIType string `json:"msiType,omitempty"`
}

// GetSEIDResponse is the get-se-id response.
type GetSEIDResponse struct {
	Result
	MSI      string `json:"msi,omitempty"`
	SEID     string `json:"seId,omitempty"`
	SEIDType string `json:"seIdType,omitempty"`
}

// SEIDTypeCIN is the only SE id type: the card image number in hex.
const SEIDTypeCIN = "CIN"

// GetSEDataRequest is the get-se-data request.
type GetSEDataRequest struct {
	Common
	SEID string `json:"seId,omitempty"`
	MSI  string `json:"msi,omitempty"`
}

// SecurityDomain is the requesting SP's SD on an SE.
type SecurityDomain struct {
	AID            string `json:"aid"`
	LifeCycle      string `json:"lifeCycle"`
	KeyVersion     int    `json:"keyVersion"`
	MasterKeyIndex int    `json:"masterKeyIndex"`
}

// ServiceInstance is one of the SP's service instances on an SE.
type ServiceInstance struct {
	ServiceID        ServiceID         `json:"serviceId"`
	ServiceQualifier *ServiceQualifier `json:"serviceQualifier,omitempty"`
	InstanceAID      string            `json:"instanceAid"`
	State            string            `json:"state"`
}

// SEData describes an SE to the SP asking.
type SEData struct {
	MNO                string            `json:"mno"`
	SEType             string            `json:"seType"`
	Configuration      string            `json:"configuration"`
	ProfileID          string            `json:"profileId"`
	GPVersion          string            `json:"gpVersion"`
	JavaCardVersion    string            `json:"javaCardVersion"`
	CertificationLevel string            `json:"certificationLevel"`
	ExpiresAt          time.Time         `json:"expiresAt"`
	SecurityDomain     *SecurityDomain   `json:"securityDomain"`
	Services           []ServiceInstance `json:"services"`
}

// GetSEDataResponse is the get-se-data response.
type GetSEDataResponse struct {
	Result
	SEID     string  `json:"seId,omitempty"`
	SEIDType string  `json:"seIdType,omitempty"`
	MSI      string  `json:"msi,omitempty"`
	SEData   *SEData `json:"seData,omitempty"`
}

// ServiceID names a service of the catalog.
type ServiceID struct {
	Number  string `json:"number"`
	Version string `json:"version"`
}

// ServiceQualifier optionally narrows a service to an SP name and PRN.
type ServiceQualifier struct {
	SPName string `json:"spName,omitempty"`
	PRN    string `json:"prn,omitempty"`
}

// Requested operations of a conversation.
const (
	OperationKeyRotation         = "key-rotation"
	OperationPersonalization     = "personalization"
	OperationPostPersonalization = "post-personalization"
	OperationOther               = "other"
)

// Script formats.
const (
	ScriptFormatExpanded = "expanded"
	ScriptFormatCompact  = "compact"
)

// BeginConversationRequest is the begin-conversation request.
type BeginConversationRequest struct {
	Common
	SEID                string            `json:"seId"`
	MSI                 string            `json:"msi,omitempty"`
	ServiceID           *ServiceID        `json:"serviceId,omitempty"`
	ServiceQualifier    *ServiceQualifier `json:"serviceQualifier,omitempty"`
	TargetAID           string            `json:"targetAid"`
	RequestedOperation  string            `json:"requestedOperation"`
	ScriptFormat        string            `json:"scriptFormat,omitempty"`
	EstimatedScriptSize int               `json:"estimatedScriptSize,omitempty"`
}

// BeginConversationResponse is the begin-conversation response.
type BeginConversationResponse struct {
	Result
	ConversationID    string     `json:"conversationId,omitempty"`
	OTACarrier        string     `json:"otaCarrier,omitempty"`
	MaxScripts        int        `json:"maxScripts,omitempty"`
	MaxAPDUsPerScript int        `json:"maxApdusPerScript,omitempty"`
	MaxScriptBytes    int        `json:"maxScriptBytes,omitempty"`
	ScriptFormat      string     `json:"scriptFormat,omitempty"`
	ExpiresAt         *time.Time `json:"expiresAt,omitempty"`
}

// Securing modes of send-script.
const (
	SecuringEndToEnd = "end-to-end"
	SecuringCentral  = "central"
)

// SendScriptRequest is the send-script request.
type SendScriptRequest struct {
	Common
	ConversationID  string   `json:"conversationId"`
	Commands        []string `json:"commands"`
	Securing        string   `json:"securing,omitempty"`
	ContinueOnError bool     `json:"continueOnError,omitempty"`
}

// ScriptFailure describes one failed command of a script.
type ScriptFailure struct {
	Index   int    `json:"index"`
	Command string `json:"command"`
	SW      string `json:"sw,omitempty"`
	Reason  string `json:"reason"`
}

// SendScriptResponse is the send-script response.
type SendScriptResponse struct {
	Result
	ConversationID string          `json:"conversationId,omitempty"`
	Responses      []string        `json:"responses"`
	Failed         []ScriptFailure `json:"failed"`
}

// Conversation outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// EndConversationRequest is the end-conversation request.
type EndConversationRequest struct {
	Common
	ConversationID string `json:"conversationId"`
	Outcome        string `json:"outcome"`
}

// EndConversationResponse is the end-conversation response.
type EndConversationResponse struct {
	Result
	ConversationID string `json:"conversationId,omitempty"`
	Outcome        string `json:"outcome,omitempty"`
}

// FailureBody is the body of a response that carries nothing but the failure.
type FailureBody struct {
	Result
}
