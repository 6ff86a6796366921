package domain

import (
	"fmt"
	"slices"
)

// MaxInstallParamsBytes bounds a service's install parameters (the C9
// application-specific parameters of INSTALL [for install], one length byte).
const MaxInstallParamsBytes = 255

// Service is a catalog entry: what an SP's instance of a service is
// instantiated from (ELF and module) and the instance AID it gets.
type Service struct {
	Number        string
	Version       string
	SPID          string
	ELFAID        string
	ModuleAID     string
	InstanceAID   string
	InstallParams string
	// Eligibility narrows the SEs the service may be pre-personalized on.
	Eligibility Eligibility
}

// Eligibility is a catalog entry's optional requirements on an SE; an empty
// field accepts any SE.
type Eligibility struct {
	// SETypes the SE's seType must be one of (eSE, UICC).
	SETypes []string
	// Configurations the SE's configuration must be one of.
	Configurations []string
	// MinGPVersion is the lowest GP version (dotted numbers) of an eligible SE.
	MinGPVersion string
	// CertificationLevels the SE's certificationLevel must be one of.
	CertificationLevels []string
}

// ServiceInput is what a client sends to enroll or update a catalog service.
type ServiceInput struct {
	SPID          string
	ELFAID        string
	ModuleAID     string
	InstanceAID   string
	InstallParams string
	Eligibility   Eligibility
}

// NewService validates in and returns the service number/version. Whether the
// SP exists is the application's check.
func NewService(number, version string, in ServiceInput) (Service, error) {
	var fe fieldErrors
	if !catalogTokenPattern.MatchString(number) {
		fe.add("number", "a service number is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	if !catalogTokenPattern.MatchString(version) {
		fe.add("version", "a service version is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-' (no dots: write 1-0 for 1.0)")
	}
	if !ValidEntityID(in.SPID) {
		fe.add("spId", "is required: the id of an enrolled SP")
	}
	s := Service{Number: number, Version: version, SPID: in.SPID}
	aid := func(field, v string) string {
		a, ok := NormalizeAID(v)
		if !ok {
			fe.add(field, "must be an AID of %d to %d bytes in hex", MinAIDBytes, MaxAIDBytes)
		}
		return a
	}
	s.ELFAID = aid("elfAid", in.ELFAID)
	s.ModuleAID = aid("moduleAid", in.ModuleAID)
	s.InstanceAID = aid("instanceAid", in.InstanceAID)
	if in.InstallParams != "" {
		if n, ok := decodeHex(in.InstallParams); !ok {
			fe.add("installParams", "must be hex")
		} else if n > MaxInstallParamsBytes {
			fe.add("installParams", "has %d bytes: at most %d", n, MaxInstallParamsBytes)
		} else {
			s.InstallParams = upper(in.InstallParams)
		}
	}
	s.Eligibility = checkEligibility(&fe, in.Eligibility)
	return s, fe.err()
}

// checkEligibility validates the optional requirements of a catalog entry;
// empty lists become nil so that equal entries compare equal.
func checkEligibility(fe *fieldErrors, in Eligibility) Eligibility {
	var out Eligibility
	for i, t := range in.SETypes {
		if t != SETypeESE && t != SETypeUICC {
			fe.add(fmt.Sprintf("seTypes[%d]", i), "send \"eSE\" or \"UICC\"")
		}
		out.SETypes = append(out.SETypes, t)
	}
	for i, c := range in.Configurations {
		if !ValidConfiguration(c) {
			fe.add(fmt.Sprintf("configurations[%d]", i), "send one of \"embedded\", \"uicc\", \"embedded-3p\", \"uicc-3p\"")
		}
		out.Configurations = append(out.Configurations, c)
	}
	if in.MinGPVersion != "" {
		if _, ok := ParseVersion(in.MinGPVersion); !ok {
			fe.add("minGpVersion", "must be a version of dotted numbers, such as 2.2 or 2.3.1")
		}
		out.MinGPVersion = in.MinGPVersion
	}
	for i, l := range in.CertificationLevels {
		if l == "" || len(l) > maxAttrLen {
			fe.add(fmt.Sprintf("certificationLevels[%d]", i), "must be 1 to %d bytes", maxAttrLen)
		}
		out.CertificationLevels = append(out.CertificationLevels, l)
	}
	return out
}

// Equal reports whether two catalog entries have the same content.
func (s Service) Equal(o Service) bool {
	return s.Number == o.Number && s.Version == o.Version && s.SPID == o.SPID && s.ELFAID == o.ELFAID &&
		s.ModuleAID == o.ModuleAID && s.InstanceAID == o.InstanceAID && s.InstallParams == o.InstallParams &&
		slices.Equal(s.Eligibility.SETypes, o.Eligibility.SETypes) &&
		slices.Equal(s.Eligibility.Configurations, o.Eligibility.Configurations) &&
		s.Eligibility.MinGPVersion == o.Eligibility.MinGPVersion &&
		slices.Equal(s.Eligibility.CertificationLevels, o.Eligibility.CertificationLevels)
}

// Key is the catalog key of a service, number/version.
func (s Service) Key() string { return ServiceKey(s.Number, s.Version) }

// ServiceKey is the catalog key (and event subject attribute) of number/version.
func ServiceKey(number, version string) string { return number + "/" + version }
