package domain

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// ErrRejectedRecord marks an SE record the factory can never turn into a
// card (unknown configuration, malformed SE id or AID, no SP master key):
// retrying cannot help, the record itself must be fixed.
var ErrRejectedRecord = errors.New("SE record rejected")

// Demo key material. These values are public (they are in this repository
// and in the GlobalPlatform test literature) and exist only so that the
// embedded demo run works without configuration; the service logs a warning
// whenever one of them is in use.
var (
	// DemoIssuerMasterKey is the default issuer master key (40..4F, the
	// GlobalPlatform test key).
	DemoIssuerMasterKey = SecretKey(mustHex("404142434445464748494A4B4C4D4E4F"))
	// DemoSPMasterKey is the default master key of every SP's pre-issued SD
	// (50..5F). An SP's tooling derives the same SD keys with
	// `--sd-master-key 505152535455565758595A5B5C5D5E5F` and the card's KDD.
	DemoSPMasterKey = SecretKey(mustHex("505152535455565758595A5B5C5D5E5F"))
)

// DefaultIIN is the issuer identification number (tag 42 of the ISD) of the
// simulated cards unless configured: the value the card model uses itself.
var DefaultIIN = mustHex("420001")

// SPMasterKeys gives the master key from which the keys of an SP's
// pre-issued security domain are diversified.
type SPMasterKeys struct {
	// BySP maps an SP id to its master key.
	BySP map[string]SecretKey
	// Default is the key of every SP missing from BySP; nil means such an SP
	// has no key, and an SE record pre-issuing an SD for it is rejected.
	Default SecretKey
}

// DemoSPMasterKeys gives every SP DemoSPMasterKey (a demo-only convenience).
func DemoSPMasterKeys() SPMasterKeys { return SPMasterKeys{Default: DemoSPMasterKey} }

// For returns the master key of an SP.
func (k SPMasterKeys) For(spID string) (SecretKey, bool) {
	if key, ok := k.BySP[spID]; ok {
		return key, true
	}
	return k.Default, k.Default != nil
}

// UsesDemoKey reports whether any SP gets DemoSPMasterKey.
func (k SPMasterKeys) UsesDemoKey() bool {
	if equalBytes(k.Default, DemoSPMasterKey) {
		return true
	}
	for _, v := range k.BySP {
		if equalBytes(v, DemoSPMasterKey) {
			return true
		}
	}
	return false
}

// ParseSPMasterKeys reads the SESIM_SP_MASTER_KEYS syntax: comma-separated
// spId=hex pairs, where the spId * sets the key of every SP not listed
// (e.g. "bank-a=00112233445566778899AABBCCDDEEFF,*=505152535455565758595A5B5C5D5E5F").
// Errors name the offending entry, never a key value.
func ParseSPMasterKeys(s string) (SPMasterKeys, error) {
	out := SPMasterKeys{BySP: map[string]SecretKey{}}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		spID, hexKey, ok := strings.Cut(part, "=")
		spID = strings.TrimSpace(spID)
		if !ok || spID == "" {
			return SPMasterKeys{}, fmt.Errorf("entry %d: want spId=hexkey", i+1)
		}
		if spID != "*" && !topology.SPIDPattern.MatchString(spID) {
			return SPMasterKeys{}, fmt.Errorf("entry %d: SP id %q does not match [a-z0-9-]{1,32}", i+1, spID)
		}
		key, err := hex.DecodeString(strings.TrimSpace(hexKey))
		if err != nil || !ValidAESKeyLength(len(key)) {
			return SPMasterKeys{}, fmt.Errorf("entry %d (%s): key must be 32, 48 or 64 hex digits (AES-128/192/256)", i+1, spID)
		}
		if spID == "*" {
			out.Default = key
			continue
		}
		if _, dup := out.BySP[spID]; dup {
			return SPMasterKeys{}, fmt.Errorf("entry %d: SP %s listed twice", i+1, spID)
		}
		out.BySP[spID] = key
	}
	return out, nil
}

// Factory is the card factory: the issuer configuration that turns an SE
// record of the registry into a manufactured card.
type Factory struct {
	// IssuerMasterKey diversifies the keys of the issuer's SDs (ISD, central
	// SD, ...) over each card's KDD.
	IssuerMasterKey SecretKey
	// IIN is the issuer identification number (ISD tag 42).
	IIN []byte
	// SPMasterKeys diversify the keys of pre-issued SP SDs.
	SPMasterKeys SPMasterKeys
	// GenericELF and GenericModule override the AIDs of the generic payment
	// application pre-loaded on every card (nil: card.GenericELFAID and
	// card.GenericModuleAID).
	GenericELF, GenericModule []byte
}

// configurations lists the valid configurations, for error messages.
var configurations = []string{string(card.Embedded), string(card.UICC), string(card.Embedded3P), string(card.UICC3P)}

// CIN returns the card image number of an SE id: the SE id is the CIN in
// uppercase hex, 8 to 10 bytes as GlobalPlatform cards have it.
func CIN(seID string) ([]byte, error) {
	if !topology.ValidSEID(seID) {
		return nil, fmt.Errorf("%w: SE id %q is not an uppercase hex CIN", ErrRejectedRecord, seID)
	}
	cin, err := hex.DecodeString(seID)
	if err != nil {
		return nil, fmt.Errorf("%w: SE id %q is not hex", ErrRejectedRecord, seID)
	}
	if len(cin) < 8 || len(cin) > 10 {
		return nil, fmt.Errorf("%w: SE id %s is a %d-byte CIN; a card needs 8 to 10 bytes (16-20 hex digits)",
			ErrRejectedRecord, seID, len(cin))
	}
	return cin, nil
}

// Spec returns what the card of an SE record is made of. Errors wrap
// ErrRejectedRecord, say what to fix in the record or configuration and
// never contain key values.
func (f Factory) Spec(rec events.SERecord) (card.ManufactureSpec, error) {
	cin, err := CIN(rec.SEID)
	if err != nil {
		return card.ManufactureSpec{}, err
	}
	cfg := card.Config(rec.Configuration)
	if !cfg.Valid() {
		return card.ManufactureSpec{}, fmt.Errorf("%w: SE %s has unknown configuration %q; want one of %s",
			ErrRejectedRecord, rec.SEID, rec.Configuration, strings.Join(configurations, ", "))
	}
	if !ValidAESKeyLength(len(f.IssuerMasterKey)) {
		return card.ManufactureSpec{}, errors.New("card factory: issuer master key must be an AES-128/192/256 key")
	}
	spec := card.ManufactureSpec{
		CIN:             cin,
		IIN:             append([]byte(nil), f.IIN...),
		Config:          cfg,
		IssuerMasterKey: append([]byte(nil), f.IssuerMasterKey...),
		GenericELF:      f.GenericELF,
		GenericModule:   f.GenericModule,
	}
	seen := map[string]bool{}
	for i, sd := range rec.PreIssuedSPDomains {
		aid, err := hex.DecodeString(sd.AID)
		if err != nil || len(aid) < 5 || len(aid) > 16 {
			return card.ManufactureSpec{}, fmt.Errorf("%w: SE %s: pre-issued SD %d (SP %s) has AID %q; want 5-16 bytes in hex",
				ErrRejectedRecord, rec.SEID, i, sd.SPID, sd.AID)
		}
		if seen[strings.ToUpper(sd.AID)] {
			return card.ManufactureSpec{}, fmt.Errorf("%w: SE %s: pre-issued SD AID %s listed twice",
				ErrRejectedRecord, rec.SEID, strings.ToUpper(sd.AID))
		}
		seen[strings.ToUpper(sd.AID)] = true
		key, ok := f.SPMasterKeys.For(sd.SPID)
		if !ok {
			return card.ManufactureSpec{}, fmt.Errorf("%w: SE %s: no master key for SP %q to create its pre-issued SD; "+
				"add %s=<hex key> (or *=<hex key>) to SESIM_SP_MASTER_KEYS", ErrRejectedRecord, rec.SEID, sd.SPID, sd.SPID)
		}
		spec.PreIssuedSPDomains = append(spec.PreIssuedSPDomains, card.PreIssuedSD{AID: aid, MasterKey: append([]byte(nil), key...)})
	}
	return spec, nil
}

// SortedSPs lists the SP ids with a configured key (for start-up logs: ids,
// never keys).
func (k SPMasterKeys) SortedSPs() []string {
	out := make([]string, 0, len(k.BySP))
	for id := range k.BySP {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func equalBytes(a, b []byte) bool {
	if len(a) != len(b) || a == nil || b == nil {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		// Only reachable with a malformed literal in this package.
		panic(err)
	}
	return b
}
