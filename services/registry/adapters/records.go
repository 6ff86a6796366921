package adapters

import (
	"github.com/tsmhub/tsmhub/pkg/events"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// The published records (pkg/events) are also the stored form of MNOs,
// catalog services and SEs: one JSON encoding serves both the bucket and the
// event. These functions convert between them.

// MNORecord is the published record of an MNO.
func MNORecord(m domain.MNO) events.MNORecord {
	return events.MNORecord{MNOID: m.ID, Name: m.Name, OTACarrier: m.OTACarrier,
		MaxAPDUsPerScript: m.MaxAPDUsPerScript, LatencyMs: m.LatencyMs}
}

func mnoFromRecord(r events.MNORecord) domain.MNO {
	return domain.MNO{ID: r.MNOID, Name: r.Name, OTACarrier: r.OTACarrier,
		MaxAPDUsPerScript: r.MaxAPDUsPerScript, LatencyMs: r.LatencyMs}
}

// SPRecord is the published record of an SP: no key.
func SPRecord(sp domain.SP) events.SPRecord {
	return events.SPRecord{SPID: sp.ID, Name: sp.Name, SecurityDomainAID: sp.SecurityDomainAID}
}

// ServiceRecord is the published record of a catalog service.
func ServiceRecord(s domain.Service) events.ServiceRecord {
	return events.ServiceRecord{Number: s.Number, Version: s.Version, SPID: s.SPID, ELFAID: s.ELFAID,
		ModuleAID: s.ModuleAID, InstanceAID: s.InstanceAID, InstallParams: s.InstallParams,
		SETypes: s.Eligibility.SETypes, Configurations: s.Eligibility.Configurations,
		MinGPVersion: s.Eligibility.MinGPVersion, CertificationLevels: s.Eligibility.CertificationLevels}
}

func serviceFromRecord(r events.ServiceRecord) domain.Service {
	return domain.Service{Number: r.Number, Version: r.Version, SPID: r.SPID, ELFAID: r.ELFAID,
		ModuleAID: r.ModuleAID, InstanceAID: r.InstanceAID, InstallParams: r.InstallParams,
		Eligibility: domain.Eligibility{SETypes: r.SETypes, Configurations: r.Configurations,
			MinGPVersion: r.MinGPVersion, CertificationLevels: r.CertificationLevels}}
}

// SERecord is the published record of an SE.
func SERecord(se domain.SE) events.SERecord {
	r := events.SERecord{SEID: se.ID, MSI: se.MSI, MSIType: se.MSIType, MNO: se.MNO, SEType: se.SEType,
		Configuration: se.Configuration, ProfileID: se.ProfileID, GPVersion: se.GPVersion,
		JavaCardVersion: se.JavaCardVersion, CertificationLevel: se.CertificationLevel,
		ExpiresAt: se.ExpiresAt, Status: string(se.Status), UpdatedAt: se.UpdatedAt}
	for _, sd := range se.PreIssuedSPDomains {
		r.PreIssuedSPDomains = append(r.PreIssuedSPDomains, events.PreIssuedSD{SPID: sd.SPID, AID: sd.AID})
	}
	return r
}

func seFromRecord(r events.SERecord) domain.SE {
	se := domain.SE{ID: r.SEID, MSI: r.MSI, MSIType: r.MSIType, MNO: r.MNO, SEType: r.SEType,
		Configuration: r.Configuration, ProfileID: r.ProfileID, GPVersion: r.GPVersion,
		JavaCardVersion: r.JavaCardVersion, CertificationLevel: r.CertificationLevel,
		ExpiresAt: r.ExpiresAt, Status: domain.SEStatus(r.Status), UpdatedAt: r.UpdatedAt}
	for _, sd := range r.PreIssuedSPDomains {
		se.PreIssuedSPDomains = append(se.PreIssuedSPDomains, domain.PreIssuedSD{SPID: sd.SPID, AID: sd.AID})
	}
	return se
}
