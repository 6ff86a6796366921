package domain

import (
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

// Custody states of an SP SD's keys, as the router knows them.
const (
	// CustodyCentral: the router holds the SD's temporary keys (sealed).
	CustodyCentral = events.KeysHeldByCentral
	// CustodySP: the SP replaced the keys with PUT KEY; the router erased its copy.
	CustodySP = events.KeysHeldBySP
	// CustodyExpired: the SP did not replace the temporary keys within the
	// configured time to live; the router erased its copy.
	CustodyExpired = "expired"
)

// HeldKeys are the temporary keys of an SP SD the router holds: ENC || MAC ||
// DEK sealed under the router's KEK, bound to SE and SD.
type HeldKeys struct {
	SEID       string    `json:"seId"`
	SDAID      string    `json:"sdAid"`
	SPID       string    `json:"spId"`
	KeyVersion int       `json:"keyVersion"`
	CreatedAt  time.Time `json:"createdAt"`
	Sealed     []byte    `json:"sealed"`
}

// Custody is the key custody of one SP SD on one SE: who holds its keys
// since when. It never carries key values.
type Custody struct {
	SEID  string `json:"seId"`
	SDAID string `json:"sdAid"`
	SPID  string `json:"spId"`
	// State is CustodyCentral, CustodySP or CustodyExpired.
	State string `json:"state"`
	// KeyVersion is the KVN of the keys in State: the temporary keys', or
	// the SP's new one when the router could read it (else 0).
	KeyVersion int `json:"keyVersion"`
	// KeysCreatedAt is when the router created the temporary keys (zero if
	// it never did).
	KeysCreatedAt time.Time `json:"keysCreatedAt,omitzero"`
	// Since is when the state began.
	Since time.Time `json:"since"`
}

// PickCentralSD chooses the SD an SP script with securing central runs on:
// the conversation's target if it is one of the SP's SDs with held keys,
// else the first of the SP's SDs with held keys. held reports whether the
// router holds keys of an SD.
func PickCentralSD(scope SPScope, targetAID string, held func(sdAID string) bool) (string, bool) {
	if scope.isSD(targetAID) && held(strings.ToUpper(targetAID)) {
		return strings.ToUpper(targetAID), true
	}
	for _, sd := range scope.SDAIDs {
		if held(strings.ToUpper(sd)) {
			return strings.ToUpper(sd), true
		}
	}
	return "", false
}

// RefusedSD names the SD a securing central refusal explains: the target if
// it is one of the SP's SDs, else its first SD ("" if it has none).
func RefusedSD(scope SPScope, targetAID string) string {
	if scope.isSD(targetAID) {
		return strings.ToUpper(targetAID)
	}
	if len(scope.SDAIDs) > 0 {
		return strings.ToUpper(scope.SDAIDs[0])
	}
	return ""
}

// CentralRefusal is the NOT_ALLOWED answer to securing central when the
// router holds no keys of the SP's SD: it says why and what to do. c is the
// custody record of sdAID (nil if the router never held its keys); ttl is
// the configured time to live of temporary keys.
func CentralRefusal(spID, seID, sdAID string, c *Custody, ttl time.Duration) *Rejection {
	if sdAID == "" {
		return Reject(contract.CodeNotAllowed,
			"securing central needs a security domain of SP %s on SE %s whose keys the central TSM holds, and it knows none: secure the script end to end",
			spID, seID)
	}
	if c == nil {
		return Reject(contract.CodeNotAllowed,
			"the central TSM holds no keys of security domain %s: it did not create it with temporary keys (its keys were issued to SP %s directly), so it cannot secure the script: secure the script end to end",
			sdAID, spID)
	}
	at := c.Since.UTC().Format(time.RFC3339)
	switch c.State {
	case CustodySP:
		return Reject(contract.CodeNotAllowed,
			"the keys of security domain %s belong to SP %s since it replaced them at %s: secure the script end to end",
			sdAID, c.SPID, at)
	case CustodyExpired:
		return Reject(contract.CodeNotAllowed,
			"the central TSM erased its copy of the temporary keys of security domain %s at %s, %s after it created them, because they were not replaced: secure the script end to end (the temporary keys open the SD until you replace them)",
			sdAID, at, ttl)
	}
	return Reject(contract.CodeNotAllowed,
		"the central TSM holds no keys of security domain %s: secure the script end to end", sdAID)
}
