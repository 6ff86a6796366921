package domain

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ValidConfiguration reports whether c is one of the SE configurations of
// DESIGN.md section 1.
func ValidConfiguration(c string) bool {
	switch c {
	case ConfigEmbedded, ConfigUICC, ConfigEmbedded3P, ConfigUICC3P:
		return true
	}
	return false
}

// MinPrePersonalizeGPVersion is the lowest GlobalPlatform Card Specification
// version pre-personalize works with: its steps open SCP03 with the central
// SD and extradite into a supplementary SD, which GP 2.2 brought.
const MinPrePersonalizeGPVersion = "2.2"

// ParseVersion reads a version of dotted numbers ("2", "2.2", "2.3.1").
func ParseVersion(v string) ([]int, bool) {
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || p[0] == '+' || p[0] == '-' {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// CompareVersions compares two parsed versions number by number; a missing
// number counts as 0 (2.2 == 2.2.0).
func CompareVersions(a, b []int) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// atLeast reports whether version have is min or later; ok is false when
// have cannot be read.
func atLeast(have, min string) (bool, bool) {
	h, ok := ParseVersion(have)
	if !ok {
		return false, false
	}
	m, _ := ParseVersion(min)
	return CompareVersions(h, m) >= 0, true
}

// Ineligibility says why se may not get service s pre-personalized at now,
// naming the failed check; "" when it is eligible. The platform's own checks
// come first (validity, configuration, GP version), then the catalog entry's
// requirements.
func Ineligibility(se SE, s Service, now time.Time) string {
	if se.Expired(now) {
		return fmt.Sprintf("SE %s expired at %s", se.ID, se.ExpiresAt.Format(time.RFC3339))
	}
	if !ValidConfiguration(se.Configuration) {
		return fmt.Sprintf("SE %s has configuration %q: pre-personalize runs on embedded, uicc, embedded-3p and uicc-3p SEs",
			se.ID, se.Configuration)
	}
	switch ok, readable := atLeast(se.GPVersion, MinPrePersonalizeGPVersion); {
	case !readable:
		return fmt.Sprintf("SE %s reports GP version %q, which is not a version of dotted numbers", se.ID, se.GPVersion)
	case !ok:
		return fmt.Sprintf("SE %s implements GP %s: pre-personalize needs GP %s or later", se.ID, se.GPVersion,
			MinPrePersonalizeGPVersion)
	}
	e := s.Eligibility
	if len(e.SETypes) > 0 && !slices.Contains(e.SETypes, se.SEType) {
		return fmt.Sprintf("service %s requires an SE of type %s; SE %s is of type %s", s.Key(),
			strings.Join(e.SETypes, " or "), se.ID, se.SEType)
	}
	if len(e.Configurations) > 0 && !slices.Contains(e.Configurations, se.Configuration) {
		return fmt.Sprintf("service %s requires configuration %s; SE %s has configuration %s", s.Key(),
			strings.Join(e.Configurations, " or "), se.ID, se.Configuration)
	}
	if e.MinGPVersion != "" {
		if ok, _ := atLeast(se.GPVersion, e.MinGPVersion); !ok {
			return fmt.Sprintf("service %s requires GP %s or later; SE %s implements GP %s", s.Key(), e.MinGPVersion,
				se.ID, se.GPVersion)
		}
	}
	if len(e.CertificationLevels) > 0 && !slices.Contains(e.CertificationLevels, se.CertificationLevel) {
		return fmt.Sprintf("service %s requires certification level %s; SE %s has %s", s.Key(),
			strings.Join(e.CertificationLevels, " or "), se.ID, se.CertificationLevel)
	}
	return ""
}
