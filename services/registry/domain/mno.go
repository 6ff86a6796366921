package domain

// OTA carriers an MNO offers (the bearer its adapter models).
const (
	CarrierHTTPS = "https"
	CarrierSMS   = "sms"
)

// Defaults and bounds of an MNO's limits.
const (
	// DefaultMaxAPDUsHTTPS is the per-script APDU limit of an HTTPS admin session.
	DefaultMaxAPDUsHTTPS = 32
	// DefaultMaxAPDUsSMS is the per-script APDU limit over SMS: a few
	// concatenated SMS carry only a handful of commands.
	DefaultMaxAPDUsSMS = 8
	// MaxAPDUsPerScriptLimit bounds any MNO's limit.
	MaxAPDUsPerScriptLimit = 1000
	// MaxLatencyMs bounds the simulated OTA latency (10 minutes).
	MaxLatencyMs = 600_000
	// maxNameLen bounds display names.
	maxNameLen = 200
)

// MNO is a mobile network operator through which SEs are reached over the air.
type MNO struct {
	ID                string
	Name              string
	OTACarrier        string
	MaxAPDUsPerScript int
	LatencyMs         int
}

// MNOInput is what a client sends to enroll or update an MNO; nil pointers
// take the defaults.
type MNOInput struct {
	Name              string
	OTACarrier        string
	MaxAPDUsPerScript *int
	LatencyMs         *int
}

// NewMNO validates in and returns the MNO with id.
func NewMNO(id string, in MNOInput) (MNO, error) {
	var fe fieldErrors
	if !ValidEntityID(id) {
		fe.add("mnoId", "an MNO id is 1 to 32 characters of a-z, 0-9 and '-'")
	}
	checkName(&fe, in.Name)
	m := MNO{ID: id, Name: in.Name, OTACarrier: in.OTACarrier}
	switch in.OTACarrier {
	case CarrierHTTPS:
		m.MaxAPDUsPerScript = DefaultMaxAPDUsHTTPS
	case CarrierSMS:
		m.MaxAPDUsPerScript = DefaultMaxAPDUsSMS
	default:
		fe.add("otaCarrier", "send \"https\" or \"sms\"")
	}
	if in.MaxAPDUsPerScript != nil {
		if n := *in.MaxAPDUsPerScript; n < 1 || n > MaxAPDUsPerScriptLimit {
			fe.add("maxApdusPerScript", "must be between 1 and %d", MaxAPDUsPerScriptLimit)
		} else {
			m.MaxAPDUsPerScript = n
		}
	}
	if in.LatencyMs != nil {
		if n := *in.LatencyMs; n < 0 || n > MaxLatencyMs {
			fe.add("latencyMs", "must be between 0 and %d", MaxLatencyMs)
		} else {
			m.LatencyMs = n
		}
	}
	return m, fe.err()
}

func checkName(fe *fieldErrors, name string) {
	switch {
	case name == "":
		fe.add("name", "is required")
	case len(name) > maxNameLen:
		fe.add("name", "must be at most %d bytes", maxNameLen)
	}
}
