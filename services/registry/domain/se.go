package domain

import (
	"fmt"
	"time"
)

// SE types.
const (
	SETypeESE  = "eSE"
	SETypeUICC = "UICC"
)

// SE configurations (DESIGN.md section 1).
const (
	ConfigEmbedded   = "embedded"
	ConfigUICC       = "uicc"
	ConfigEmbedded3P = "embedded-3p"
	ConfigUICC3P     = "uicc-3p"
)

// SEStatus is the life of an SE as reported by its owner or operator.
type SEStatus string

// SE statuses. An SE is active from enrollment; lost and stolen make it
// inaccessible to SPs; found records that a lost or stolen SE is back.
const (
	StatusActive SEStatus = "active"
	StatusLost   SEStatus = "lost"
	StatusStolen SEStatus = "stolen"
	StatusFound  SEStatus = "found"
)

// ParseReportedStatus accepts the statuses an operator may report.
func ParseReportedStatus(s string) (SEStatus, bool) {
	switch st := SEStatus(s); st {
	case StatusLost, StatusStolen, StatusFound:
		return st, true
	}
	return "", false
}

// Inaccessible reports whether SPs must not reach the SE (lost or stolen).
func (s SEStatus) Inaccessible() bool { return s == StatusLost || s == StatusStolen }

// maxAttrLen bounds the descriptive SE attributes (profile id, versions...).
const maxAttrLen = 64

// PreIssuedSD is an SP security domain created on the card at issuance.
type PreIssuedSD struct {
	SPID string
	AID  string
}

// SE is an enrolled secure element.
type SE struct {
	// ID is the CIN in uppercase hex.
	ID string
	// MSI is the subscription identity (digits only); unique per MSIType.
	MSI                string
	MSIType            string
	MNO                string
	SEType             string
	Configuration      string
	ProfileID          string
	GPVersion          string
	JavaCardVersion    string
	CertificationLevel string
	ExpiresAt          time.Time
	Status             SEStatus
	PreIssuedSPDomains []PreIssuedSD
	UpdatedAt          time.Time
}

// SEInput is what a client sends to enroll or update an SE, as strings so
// that every syntax problem can be reported by field.
type SEInput struct {
	MSI                string
	MSIType            string
	MNO                string
	SEType             string
	Configuration      string
	ProfileID          string
	GPVersion          string
	JavaCardVersion    string
	CertificationLevel string
	ExpiresAt          string
	// PreIssuedSPDomains: an empty AID takes the SP's security domain AID,
	// which the application fills in.
	PreIssuedSPDomains []PreIssuedSD
}

// NewSE validates the syntax of in and returns the SE with id (any case),
// status active. The application checks what needs the registry: that the
// MNO and SPs exist and that no other SE holds the MSI.
func NewSE(id string, in SEInput) (SE, error) {
	var fe fieldErrors
	se := SE{Status: StatusActive, MNO: in.MNO, ProfileID: in.ProfileID, GPVersion: in.GPVersion,
		JavaCardVersion: in.JavaCardVersion, CertificationLevel: in.CertificationLevel}
	var ok bool
	if se.ID, ok = NormalizeSEID(id); !ok {
		fe.add("seId", "%s", seIDRule)
	}
	if se.MSI, ok = NormalizeMSI(in.MSI); !ok {
		fe.add("msi", "%s", msiRule)
	}
	if se.MSIType, ok = NormalizeMSIType(in.MSIType); !ok {
		fe.add("msiType", "send \"MSISDN\" (the default) or \"MDN\"")
	}
	if !ValidEntityID(in.MNO) {
		fe.add("mno", "is required: the id of an enrolled MNO")
	}
	switch in.SEType {
	case SETypeESE, SETypeUICC:
		se.SEType = in.SEType
	default:
		fe.add("seType", "send \"eSE\" or \"UICC\"")
	}
	switch in.Configuration {
	case ConfigEmbedded, ConfigUICC, ConfigEmbedded3P, ConfigUICC3P:
		se.Configuration = in.Configuration
	default:
		fe.add("configuration", "send one of \"embedded\", \"uicc\", \"embedded-3p\", \"uicc-3p\"")
	}
	for _, a := range []struct{ field, value string }{
		{"profileId", in.ProfileID}, {"gpVersion", in.GPVersion},
		{"javaCardVersion", in.JavaCardVersion}, {"certificationLevel", in.CertificationLevel},
	} {
		switch {
		case a.value == "":
			fe.add(a.field, "is required")
		case len(a.value) > maxAttrLen:
			fe.add(a.field, "must be at most %d bytes", maxAttrLen)
		}
	}
	if in.ExpiresAt == "" {
		fe.add("expiresAt", "is required: an RFC 3339 time such as 2030-12-31T23:59:59Z")
	} else if t, err := time.Parse(time.RFC3339, in.ExpiresAt); err != nil {
		fe.add("expiresAt", "is not an RFC 3339 time: send e.g. 2030-12-31T23:59:59Z")
	} else {
		se.ExpiresAt = t.UTC()
	}
	seen := map[string]bool{}
	for i, sd := range in.PreIssuedSPDomains {
		field := fmt.Sprintf("preIssuedSpDomains[%d]", i)
		if !ValidEntityID(sd.SPID) {
			fe.add(field+".spId", "is required: the id of an enrolled SP")
		} else if seen[sd.SPID] {
			fe.add(field+".spId", "SP %s is listed twice: an SP has at most one security domain on an SE", sd.SPID)
		}
		seen[sd.SPID] = true
		out := PreIssuedSD{SPID: sd.SPID}
		if sd.AID != "" {
			if out.AID, ok = NormalizeAID(sd.AID); !ok {
				fe.add(field+".aid", "must be an AID of %d to %d bytes in hex", MinAIDBytes, MaxAIDBytes)
			}
		}
		se.PreIssuedSPDomains = append(se.PreIssuedSPDomains, out)
	}
	if err := fe.err(); err != nil {
		return SE{}, err
	}
	return se, nil
}

// Expired reports whether the SE's validity ended before now.
func (s SE) Expired(now time.Time) bool { return !s.ExpiresAt.After(now) }

// PreIssuedSDOf returns the SP's pre-issued security domain, if any.
func (s SE) PreIssuedSDOf(spID string) (PreIssuedSD, bool) {
	for _, sd := range s.PreIssuedSPDomains {
		if sd.SPID == spID {
			return sd, true
		}
	}
	return PreIssuedSD{}, false
}

// SameContent reports whether two SE states are equal apart from UpdatedAt,
// so that re-sending an unchanged SE changes nothing and publishes nothing.
func (s SE) SameContent(o SE) bool {
	if s.ID != o.ID || s.MSI != o.MSI || s.MSIType != o.MSIType || s.MNO != o.MNO || s.SEType != o.SEType ||
		s.Configuration != o.Configuration || s.ProfileID != o.ProfileID || s.GPVersion != o.GPVersion ||
		s.JavaCardVersion != o.JavaCardVersion || s.CertificationLevel != o.CertificationLevel ||
		!s.ExpiresAt.Equal(o.ExpiresAt) || s.Status != o.Status || len(s.PreIssuedSPDomains) != len(o.PreIssuedSPDomains) {
		return false
	}
	for i := range s.PreIssuedSPDomains {
		if s.PreIssuedSPDomains[i] != o.PreIssuedSPDomains[i] {
			return false
		}
	}
	return true
}

// Pre-issued SP security domains are personalized at issuance with keys of key
// version 0x30 (48), master key index 1: the convention the card factory and
// the SPs of the demo data set share.
const (
	PreIssuedSDLifeCycle      = "PERSONALIZED"
	PreIssuedSDKeyVersion     = 0x30
	PreIssuedSDMasterKeyIndex = 1
)
