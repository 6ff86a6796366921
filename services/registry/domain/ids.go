package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// Identifier syntax. Ids end up as NATS subject tokens and durable consumer
// names (tsm.reg.mno.<mnoId>, mnoadapter-<mnoId>), so they are restricted to
// characters that are safe there.
var (
	// entityIDPattern is the syntax of MNO and SP ids (the SP pattern is the
	// public contract's, DESIGN.md section 4).
	entityIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	// catalogTokenPattern is the syntax of a service number or version: no dots,
	// because both become subject tokens of tsm.reg.svc.<number>.<version>.
	catalogTokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	// msiPattern accepts an MSISDN (E.164, up to 15 digits) or an MDN, with an
	// optional leading '+' that is dropped on normalisation.
	msiPattern = regexp.MustCompile(`^\+?[0-9]{3,15}$`)
)

// ValidEntityID reports whether s is a valid MNO or SP id.
func ValidEntityID(s string) bool { return entityIDPattern.MatchString(s) }

// SE id (CIN) length bounds in bytes.
const (
	MinSEIDBytes = 8
	MaxSEIDBytes = 16
)

// NormalizeSEID checks an SE id (the card image number, CIN, in hex, 8 to 16
// bytes) and returns it in uppercase, the only form stored and published.
func NormalizeSEID(s string) (string, bool) {
	if len(s) < 2*MinSEIDBytes || len(s) > 2*MaxSEIDBytes || len(s)%2 != 0 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return strings.ToUpper(s), true
}

// seIDRule is the user-facing statement of the SE id syntax.
const seIDRule = "an SE id is the CIN in hex, 8 to 16 bytes (16 to 32 hex digits)"

// SEIDRule says how an SE id is written, for error messages.
func SEIDRule() string { return seIDRule }

// AID length bounds in bytes (ISO/IEC 7816-5).
const (
	MinAIDBytes = 5
	MaxAIDBytes = 16
)

// NormalizeAID checks a hex AID of 5 to 16 bytes and returns it in uppercase.
func NormalizeAID(s string) (string, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < MinAIDBytes || len(b) > MaxAIDBytes {
		return "", false
	}
	return strings.ToUpper(s), true
}

// DefaultSDAIDPrefix is the registered application provider identifier (RID)
// of tsmhub, A000000555, followed by AA, the proprietary byte that marks an SP
// security domain.
const DefaultSDAIDPrefix = "A000000555AA"

// DefaultSecurityDomainAID derives the AID of an SP's security domain when the
// SP was enrolled without one: A000000555 || AA || the first two bytes of
// SHA-256(spId), 8 bytes in all, in uppercase hex. It is deterministic so that
// every registry, simulator and test computes the same AID for the same SP.
func DefaultSecurityDomainAID(spID string) string {
	sum := sha256.Sum256([]byte(spID))
	return DefaultSDAIDPrefix + strings.ToUpper(hex.EncodeToString(sum[:2]))
}

// MSI types (the public contract's msiType).
const (
	MSITypeMSISDN = "MSISDN"
	MSITypeMDN    = "MDN"
)

// NormalizeMSIType returns the MSI type, MSISDN when empty.
func NormalizeMSIType(s string) (string, bool) {
	switch s {
	case "":
		return MSITypeMSISDN, true
	case MSITypeMSISDN, MSITypeMDN:
		return s, true
	}
	return "", false
}

// NormalizeMSI checks a mobile subscription identity (3 to 15 digits, an
// optional leading '+') and returns it without the '+', so "+4917..." and
// "4917..." designate the same subscription.
func NormalizeMSI(s string) (string, bool) {
	if !msiPattern.MatchString(s) {
		return "", false
	}
	return strings.TrimPrefix(s, "+"), true
}

// msiRule is the user-facing statement of the MSI syntax.
const msiRule = "an MSI is 3 to 15 digits, optionally with a leading '+'"

// MSIRule says how an MSI is written, for error messages.
func MSIRule() string { return msiRule }

// decodeHex reports whether s is hex and how many bytes it encodes.
func decodeHex(s string) (int, bool) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return 0, false
	}
	return len(b), true
}

func upper(s string) string { return strings.ToUpper(s) }
