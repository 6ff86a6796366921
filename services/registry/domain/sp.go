package domain

import (
	"encoding/hex"
)

// SP is a service provider (its SP TSM talks the public contract). Its
// key-transport key is not part of the entity: it travels separately to the
// repository, which keeps it encrypted, so that no record, log line or
// response built from an SP can carry it by accident.
type SP struct {
	ID                string
	Name              string
	SecurityDomainAID string
}

// SPInput is what a client sends to enroll or update an SP.
type SPInput struct {
	Name string
	// KeyTransportKey is the SP's AES key in hex (16 or 32 bytes); the SP's
	// temporary SD keys are wrapped under it.
	KeyTransportKey string
	// SecurityDomainAID is optional; DefaultSecurityDomainAID(id) when empty.
	SecurityDomainAID string
}

// NewSP validates in and returns the SP with id and its key-transport key.
// Error details never repeat the key.
func NewSP(id string, in SPInput) (SP, []byte, error) {
	var fe fieldErrors
	if !ValidEntityID(id) {
		fe.add("spId", "an SP id is 1 to 32 characters of a-z, 0-9 and '-'")
	}
	checkName(&fe, in.Name)
	key, err := hex.DecodeString(in.KeyTransportKey)
	switch {
	case in.KeyTransportKey == "":
		fe.add("keyTransportKey", "is required: an AES key of 16 or 32 bytes in hex")
	case err != nil:
		fe.add("keyTransportKey", "is not hex: send an AES key of 16 or 32 bytes in hex")
	case len(key) != 16 && len(key) != 32:
		fe.add("keyTransportKey", "has %d bytes: send an AES key of 16 or 32 bytes in hex", len(key))
	}
	sp := SP{ID: id, Name: in.Name}
	if in.SecurityDomainAID == "" {
		sp.SecurityDomainAID = DefaultSecurityDomainAID(id)
	} else if aid, ok := NormalizeAID(in.SecurityDomainAID); ok {
		sp.SecurityDomainAID = aid
	} else {
		fe.add("securityDomainAid", "must be an AID of %d to %d bytes in hex", MinAIDBytes, MaxAIDBytes)
	}
	if err := fe.err(); err != nil {
		return SP{}, nil, err
	}
	return sp, key, nil
}
