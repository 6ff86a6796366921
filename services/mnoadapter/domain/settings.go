// Package domain holds the MNO adapter's rules: which delivery settings are in
// force (operator overrides over the MNO's registry record) and what becomes
// of a script at delivery time (expired, too large for the bearer, or sent).
// It knows nothing of NATS, CloudEvents or bbolt.
package domain

import (
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

// Where a setting comes from, as GET /v1/mno reports it.
const (
	SourceEnvironment = "environment"
	SourceRegistry    = "registry"
	SourceDefault     = "default"
)

// Overrides are the operator's settings from the environment; they win over
// the MNO's registry record.
type Overrides struct {
	// Latency replaces the record's latencyMs when LatencySet.
	Latency    time.Duration
	LatencySet bool
	// MaxAPDUsPerScript replaces the record's limit when > 0.
	MaxAPDUsPerScript int
	// RateLimit is the bearer's rate in scripts per second (0 = unlimited).
	RateLimit float64
	// RateBurst is how many scripts may go out back to back (at least 1).
	RateBurst int
}

// Settings are the delivery settings in force for one MNO.
type Settings struct {
	MNOID string `json:"mnoId"`
	// Name and OTACarrier come from the registry record ("" until it arrives).
	Name       string `json:"name,omitempty"`
	OTACarrier string `json:"otaCarrier,omitempty"`
	// RegistryRecord says whether the MNO's registry record has been received.
	RegistryRecord bool `json:"registryRecord"`
	// Latency is the bearer delay of every delivery.
	Latency       time.Duration `json:"-"`
	LatencyMs     int64         `json:"latencyMs"`
	LatencyText   string        `json:"latency"`
	LatencySource string        `json:"latencySource"`
	// MaxAPDUsPerScript bounds a delivered script (0 = no limit).
	MaxAPDUsPerScript int    `json:"maxApdusPerScript"`
	MaxAPDUsSource    string `json:"maxApdusSource"`
	// RateLimit in scripts per second (0 = unlimited) and its burst.
	RateLimit float64 `json:"rateLimit"`
	RateBurst int     `json:"rateBurst"`
}

// EffectiveSettings combines the record (nil if none arrived yet) with the
// overrides: environment first, then the registry, then 0 (no delay, no limit).
func EffectiveSettings(mnoID string, rec *events.MNORecord, ov Overrides) Settings {
	s := Settings{MNOID: mnoID, LatencySource: SourceDefault, MaxAPDUsSource: SourceDefault,
		RateLimit: ov.RateLimit, RateBurst: max(ov.RateBurst, 1)}
	if rec != nil {
		s.Name, s.OTACarrier, s.RegistryRecord = rec.Name, rec.OTACarrier, true
		if rec.LatencyMs > 0 {
			s.Latency, s.LatencySource = time.Duration(rec.LatencyMs)*time.Millisecond, SourceRegistry
		}
		if rec.MaxAPDUsPerScript > 0 {
			s.MaxAPDUsPerScript, s.MaxAPDUsSource = rec.MaxAPDUsPerScript, SourceRegistry
		}
	}
	if ov.LatencySet {
		s.Latency, s.LatencySource = ov.Latency, SourceEnvironment
	}
	if ov.MaxAPDUsPerScript > 0 {
		s.MaxAPDUsPerScript, s.MaxAPDUsSource = ov.MaxAPDUsPerScript, SourceEnvironment
	}
	s.LatencyMs = s.Latency.Milliseconds()
	s.LatencyText = s.Latency.String()
	return s
}

// Expired returns the EXPIRED error for a script whose validity ended before
// the bearer could deliver it at now; nil when it is still valid or has no
// deadline.
func Expired(mnoID string, validUntil, now time.Time) *contract.Error {
	if validUntil.IsZero() || !now.After(validUntil) {
		return nil
	}
	return contract.Errorf(contract.CodeExpired,
		"the request's validity ended at %s before MNO %s could deliver the script; send it again with a longer validitySeconds",
		validUntil.UTC().Format(time.RFC3339), mnoID)
}

// TooLarge returns the SCRIPT_TOO_LARGE error for a script the MNO's bearer
// cannot carry; nil when it fits. The conversation normally enforces the same
// limit; this is the bearer's own check.
func (s Settings) TooLarge(commands int) *contract.Error {
	if s.MaxAPDUsPerScript <= 0 || commands <= s.MaxAPDUsPerScript {
		return nil
	}
	return contract.Errorf(contract.CodeScriptTooLarge,
		"MNO %s carries at most %d APDUs per script but the script has %d: split it into several scripts",
		s.MNOID, s.MaxAPDUsPerScript, commands)
}

// Delivery is the adapter's bookkeeping of one deliver event it handled.
type Delivery struct {
	EventID        string    `json:"eventId"`
	ScriptID       string    `json:"scriptId"`
	ConversationID string    `json:"conversationId"`
	SEID           string    `json:"seId"`
	Outcome        string    `json:"outcome"`
	At             time.Time `json:"at"`
}

// Delivery outcomes.
const (
	// OutcomeDelivered: SEExecute sent to the SE.
	OutcomeDelivered = "delivered"
	// OutcomeExpired: the validity ended first; SEExecuted EXPIRED sent back.
	OutcomeExpired = "expired"
	// OutcomeTooLarge: more APDUs than the bearer carries; SEExecuted
	// SCRIPT_TOO_LARGE sent back.
	OutcomeTooLarge = "too-large"
	// OutcomeMalformed: the deliver event failed its schema; SEExecuted
	// INTERNAL_ERROR sent back so the script does not hang.
	OutcomeMalformed = "malformed"
	// OutcomeDuplicate: the event had been handled before; nothing sent.
	OutcomeDuplicate = "duplicate"
)

// String describes a delivery for logs (ids and outcome only).
func (d Delivery) String() string {
	return fmt.Sprintf("script %s to SE %s: %s", d.ScriptID, d.SEID, d.Outcome)
}
