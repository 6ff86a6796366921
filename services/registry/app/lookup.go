package app

import (
	"time"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// The look-ups below serve SP requests. They take the caller's transaction so
// that the answer and the idempotency record of the request commit together.

// LookupSEID returns the id of the SE holding an MSI of a type ("" = MSISDN).
func (r *Registry) LookupSEID(tx ReadTx, msiType, msi string) (string, error) {
	typ, ok := domain.NormalizeMSIType(msiType)
	if !ok {
		return "", invalidField("msiType", "send \"MSISDN\" (the default) or \"MDN\"")
	}
	norm, ok := domain.NormalizeMSI(msi)
	if !ok {
		return "", invalidField("msi", "%s", domain.MSIRule())
	}
	id, found, err := tx.SEIDByMSI(typ, norm)
	if err != nil {
		return "", err
	}
	if !found {
		return "", errorf(KindNotFound, "no SE is enrolled for this %s: check the msi and msiType", typ)
	}
	return id, nil
}

// LookupSEIDView is LookupSEID in its own read transaction.
func (r *Registry) LookupSEIDView(msiType, msi string) (string, error) {
	var id string
	err := r.repo.View(func(tx ReadTx) error {
		var err error
		id, err = r.LookupSEID(tx, msiType, msi)
		return err
	})
	return id, err
}

// SEQuery designates an SE by id, by MSI, or by both.
type SEQuery struct {
	SEID string
	MSI  string
	// MSIType of MSI. Empty: a look-up by MSI alone uses MSISDN, and an MSI
	// given with an id is compared by its digits whatever the SE's type.
	MSIType string
}

// ResolveSE finds the SE a query designates. When both an id and an MSI are
// given, the MSI must be the SE's current one (KindInvalid otherwise: the
// message does not say whether the MSI belongs to another SE).
func (r *Registry) ResolveSE(tx ReadTx, q SEQuery) (domain.SE, error) {
	if q.SEID == "" && q.MSI == "" {
		return domain.SE{}, invalidField("seId", "send seId, msi, or both")
	}
	var seID string
	if q.SEID != "" {
		id, ok := domain.NormalizeSEID(q.SEID)
		if !ok {
			return domain.SE{}, invalidField("seId", "%s", domain.SEIDRule())
		}
		seID = id
	}
	if q.MSI != "" {
		if seID == "" {
			id, err := r.LookupSEID(tx, q.MSIType, q.MSI)
			if err != nil {
				return domain.SE{}, err
			}
			seID = id
		} else if _, ok := domain.NormalizeMSI(q.MSI); !ok {
			return domain.SE{}, invalidField("msi", "%s", domain.MSIRule())
		}
	}
	se, found, err := tx.SE(seID)
	if err != nil {
		return domain.SE{}, err
	}
	if !found {
		return domain.SE{}, errorf(KindNotFound, "no SE %s is enrolled", seID)
	}
	if q.SEID != "" && q.MSI != "" {
		// Without an msiType the number alone is compared: begin-conversation
		// carries no msiType and the SE's MSI may be an MDN.
		msi, _ := domain.NormalizeMSI(q.MSI)
		typ, ok := domain.NormalizeMSIType(q.MSIType)
		if !ok || msi != se.MSI || (q.MSIType != "" && typ != se.MSIType) {
			return domain.SE{}, invalidField("msi", "seId and msi do not designate the same SE: send the SE's current msi, or seId alone")
		}
	}
	return se, nil
}

// SEView is an SE as one SP sees it.
type SEView struct {
	SE domain.SE
	// SecurityDomain is the SP's security domain on the SE, nil if none.
	SecurityDomain *SecurityDomainView
	// Services are the SP's service instances on the SE.
	Services []domain.ContentInstance
}

// SecurityDomainView is an SP security domain on an SE (no keys).
type SecurityDomainView struct {
	AID            string
	LifeCycle      string
	KeyVersion     int
	MasterKeyIndex int
}

// SEDataFor returns what SP spID may know of the SE q designates: the SE,
// the SP's own security domain on it and its service instances. The SD is
// the content model's when it has one (its life cycle and key version; master
// key index 0 for an SD pre-personalize created: its keys are random, not
// derived from a master key), else the pre-issued one.
func (r *Registry) SEDataFor(tx ReadTx, spID string, q SEQuery) (SEView, error) {
	se, err := r.ResolveSE(tx, q)
	if err != nil {
		return SEView{}, err
	}
	v := SEView{SE: se}
	content, found, err := tx.SPContent(se.ID, spID)
	if err != nil {
		return SEView{}, err
	}
	pre, preIssued := se.PreIssuedSDOf(spID)
	switch {
	case found && content.SD != nil:
		sd := content.SD
		v.SecurityDomain = &SecurityDomainView{AID: sd.AID, LifeCycle: sd.LifeCycle, KeyVersion: sd.KeyVersion}
		if !sd.CreatedByCentral {
			v.SecurityDomain.MasterKeyIndex = domain.PreIssuedSDMasterKeyIndex
		}
	case preIssued:
		v.SecurityDomain = &SecurityDomainView{AID: pre.AID, LifeCycle: domain.PreIssuedSDLifeCycle,
			KeyVersion: domain.PreIssuedSDKeyVersion, MasterKeyIndex: domain.PreIssuedSDMasterKeyIndex}
	}
	if found {
		v.Services = content.Instances
	}
	return v, nil
}

// ResolveConversation finds the SE and MNO SP spID wants a conversation
// opened on, and refuses SEs that SPs may not reach now: lost or stolen
// (KindInaccessible), expired (KindNotAllowed), and SEs where the SP has
// neither a security domain (pre-issued or in the content model), nor a
// service instance, nor a service being deployed (KindNotAllowed). A missing
// MNO record is the registry's own inconsistency (KindInternal).
func (r *Registry) ResolveConversation(tx ReadTx, spID, seID, msi string) (domain.SE, domain.MNO, error) {
	if seID == "" {
		return domain.SE{}, domain.MNO{}, invalidField("seId", "is required: %s", domain.SEIDRule())
	}
	se, err := r.ResolveSE(tx, SEQuery{SEID: seID, MSI: msi})
	if err != nil {
		return domain.SE{}, domain.MNO{}, err
	}
	if se.Status.Inaccessible() {
		return se, domain.MNO{}, errorf(KindInaccessible, "SE %s is reported %s: no conversation can be opened until it is found", se.ID, se.Status)
	}
	if now := r.Now(); se.Expired(now) {
		return se, domain.MNO{}, errorf(KindNotAllowed, "the SE expired at %s", se.ExpiresAt.Format(time.RFC3339))
	}
	if _, ok := se.PreIssuedSDOf(spID); !ok {
		content, found, err := tx.SPContent(se.ID, spID)
		if err != nil {
			return se, domain.MNO{}, err
		}
		if !found || !content.Present() {
			return se, domain.MNO{}, errorf(KindNotAllowed,
				"SP %s has no security domain and no service on SE %s: pre-personalize one of its services there first", spID, se.ID)
		}
	}
	m, found, err := tx.MNO(se.MNO)
	if err != nil {
		return se, domain.MNO{}, err
	}
	if !found {
		return se, domain.MNO{}, errorf(KindInternal, "SE %s names MNO %q, which has no record", se.ID, se.MNO)
	}
	return se, m, nil
}
