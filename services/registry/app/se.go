package app

import (
	"fmt"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// refCache remembers, within one transaction, which MNOs and SPs exist, so a
// bulk import checks each referenced entity once per batch and not per line.
type refCache struct {
	mnos map[string]bool
	sps  map[string]domain.SP
}

func newRefCache() *refCache {
	return &refCache{mnos: map[string]bool{}, sps: map[string]domain.SP{}}
}

func (c *refCache) mnoExists(tx ReadTx, id string) (bool, error) {
	if ok, cached := c.mnos[id]; cached {
		return ok, nil
	}
	_, found, err := tx.MNO(id)
	if err != nil {
		return false, err
	}
	c.mnos[id] = found
	return found, nil
}

func (c *refCache) sp(tx ReadTx, id string) (domain.SP, bool, error) {
	if sp, cached := c.sps[id]; cached {
		return sp, sp.ID != "", nil
	}
	sp, found, err := tx.SP(id)
	if err != nil {
		return domain.SP{}, false, err
	}
	c.sps[id] = sp // zero SP when not found
	return sp, found, nil
}

// PutSE enrolls or updates an SE. Its MNO and the SPs of its pre-issued
// security domains must exist, and no other SE may hold its MSI. The SE's
// status is not part of the input: an update keeps it.
func (r *Registry) PutSE(id string, in domain.SEInput) (domain.SE, Outcome, error) {
	se, err := domain.NewSE(id, in)
	if err != nil {
		return domain.SE{}, 0, fromValidation(err)
	}
	var saved domain.SE
	var outcome Outcome
	err = r.repo.Update(func(tx Tx) error {
		var err error
		saved, outcome, err = r.putSE(tx, newRefCache(), se)
		return err
	})
	return saved, outcome, err
}

// putSE is PutSE inside a transaction, shared with the bulk import.
func (r *Registry) putSE(tx Tx, refs *refCache, se domain.SE) (domain.SE, Outcome, error) {
	var fields []domain.FieldError
	if ok, err := refs.mnoExists(tx, se.MNO); err != nil {
		return se, 0, err
	} else if !ok {
		fields = append(fields, domain.FieldError{Field: "mno",
			Detail: fmt.Sprintf("no MNO %q is enrolled: enroll the MNO first", se.MNO)})
	}
	for i := range se.PreIssuedSPDomains {
		sd := &se.PreIssuedSPDomains[i]
		sp, found, err := refs.sp(tx, sd.SPID)
		if err != nil {
			return se, 0, err
		}
		if !found {
			fields = append(fields, domain.FieldError{Field: fmt.Sprintf("preIssuedSpDomains[%d].spId", i),
				Detail: fmt.Sprintf("no SP %q is enrolled: enroll the SP first", sd.SPID)})
			continue
		}
		if sd.AID == "" {
			sd.AID = sp.SecurityDomainAID
		}
	}
	if len(fields) > 0 {
		return se, 0, &Error{Kind: KindInvalid, Message: (&domain.ValidationError{Fields: fields}).Error(), Fields: fields}
	}
	prev, found, err := tx.SE(se.ID)
	if err != nil {
		return se, 0, err
	}
	if found {
		se.Status = prev.Status
	}
	if err := checkMSIFree(tx, se); err != nil {
		return se, 0, err
	}
	if found && prev.SameContent(se) {
		return prev, Unchanged, nil
	}
	se.UpdatedAt = r.Now()
	var prevPtr *domain.SE
	outcome := Created
	if found {
		prevPtr, outcome = &prev, Updated
	}
	return se, outcome, tx.SaveSE(se, prevPtr)
}

// checkMSIFree fails with KindConflict when another SE holds se's MSI. The
// message names the other SE and the MSI type, never the MSI itself.
func checkMSIFree(tx ReadTx, se domain.SE) error {
	holder, held, err := tx.SEIDByMSI(se.MSIType, se.MSI)
	if err != nil {
		return err
	}
	if held && holder != se.ID {
		return &Error{Kind: KindConflict,
			Message: fmt.Sprintf("the %s is already held by SE %s: change that SE's subscription first, or send another msi", se.MSIType, holder),
			Fields:  []domain.FieldError{{Field: "msi", Detail: fmt.Sprintf("held by SE %s", holder)}}}
	}
	return nil
}

// GetSE returns an SE by id (any case).
func (r *Registry) GetSE(id string) (domain.SE, error) {
	seID, ok := domain.NormalizeSEID(id)
	if !ok {
		return domain.SE{}, invalidField("seId", "%s", domain.SEIDRule())
	}
	var se domain.SE
	err := r.repo.View(func(tx ReadTx) error {
		var found bool
		var err error
		if se, found, err = tx.SE(seID); err == nil && !found {
			return errorf(KindNotFound, "no SE %s is enrolled", seID)
		}
		return err
	})
	return se, err
}

// FindSEByMSI returns the SE holding an MSI of a type ("" = MSISDN).
func (r *Registry) FindSEByMSI(msiType, msi string) (domain.SE, error) {
	var se domain.SE
	err := r.repo.View(func(tx ReadTx) error {
		id, err := r.LookupSEID(tx, msiType, msi)
		if err != nil {
			return err
		}
		var found bool
		if se, found, err = tx.SE(id); err == nil && !found {
			return errorf(KindInternal, "the MSI index names SE %s, which has no record", id)
		}
		return err
	})
	return se, err
}

// StatusReport is the outcome of an SE status report.
type StatusReport struct {
	SE domain.SE
	// OperationID is the id of the lock-se or unlock-se procedure requested;
	// "" when the report changed nothing (lost on a lost SE).
	OperationID string
}

// ReportSEStatus records that an SE was lost, stolen or found, publishes the
// SE record and, in the same transaction, asks the conversation service to
// lock every service instance on the SE (lost, stolen: lock-se) or to unlock
// them (found: unlock-se); the conversation service notifies the SPs. The
// same status again changes nothing; found on an SE that is not lost or
// stolen is KindNotAllowed. Lost on a stolen SE (or stolen on a lost one)
// records the new status and requests lock-se again (the conversation service
// locks only instances not locked yet), so SPs hear of the new status.
func (r *Registry) ReportSEStatus(id, status string) (StatusReport, error) {
	seID, ok := domain.NormalizeSEID(id)
	if !ok {
		return StatusReport{}, invalidField("seId", "%s", domain.SEIDRule())
	}
	st, ok := domain.ParseReportedStatus(status)
	if !ok {
		return StatusReport{}, invalidField("status", "send \"lost\", \"stolen\" or \"found\"")
	}
	var rep StatusReport
	err := r.repo.Update(func(tx Tx) error {
		rep = StatusReport{}
		prev, m, err := seAndMNO(tx, seID)
		if err != nil {
			return err
		}
		rep.SE = prev
		if st == domain.StatusFound && !prev.Status.Inaccessible() {
			return errorf(KindNotAllowed, "SE %s is %s, not lost or stolen: only a lost or stolen SE can be found", seID, prev.Status)
		}
		if prev.Status == st {
			return nil
		}
		se := prev
		se.Status = st
		se.UpdatedAt = r.Now()
		if err := tx.SaveSE(se, &prev); err != nil {
			return err
		}
		kind := domain.ProcedureLockSE
		if st == domain.StatusFound {
			kind = domain.ProcedureUnlockSE
		}
		rep.SE, rep.OperationID = se, newOperationID()
		return tx.RequestProcedure(domain.ProcedureRequest{Kind: kind, RequestID: rep.OperationID, Op: domain.OpSEStatus,
			SE: se, MNO: m, SEStatus: st, ReceivedAt: se.UpdatedAt})
	})
	return rep, err
}

// SubscriptionInput is a subscription change: the SE is now reached through
// another MSI, and possibly another MNO.
type SubscriptionInput struct {
	MSI string
	// MSIType is optional: the SE's current type when empty.
	MSIType string
	// MNO is optional: the SE's current MNO when empty.
	MNO string
}

// ChangeSubscription moves an SE to another MSI (and MNO). When the MSI,
// its type or the MNO changed, every SP present on the SE (an SD or instance
// in the content model, a pre-issued SD, a service being deployed) gets an
// msi-changed notification in the same transaction.
func (r *Registry) ChangeSubscription(id string, in SubscriptionInput) (domain.SE, error) {
	seID, ok := domain.NormalizeSEID(id)
	if !ok {
		return domain.SE{}, invalidField("seId", "%s", domain.SEIDRule())
	}
	var fields []domain.FieldError
	msi, ok := domain.NormalizeMSI(in.MSI)
	if !ok {
		fields = append(fields, domain.FieldError{Field: "msi", Detail: domain.MSIRule()})
	}
	if in.MSIType != "" {
		if _, ok := domain.NormalizeMSIType(in.MSIType); !ok {
			fields = append(fields, domain.FieldError{Field: "msiType", Detail: "send \"MSISDN\" or \"MDN\""})
		}
	}
	if in.MNO != "" && !domain.ValidEntityID(in.MNO) {
		fields = append(fields, domain.FieldError{Field: "mno", Detail: "must be the id of an enrolled MNO"})
	}
	if len(fields) > 0 {
		return domain.SE{}, &Error{Kind: KindInvalid, Message: (&domain.ValidationError{Fields: fields}).Error(), Fields: fields}
	}
	var se domain.SE
	err := r.repo.Update(func(tx Tx) error {
		prev, found, err := tx.SE(seID)
		if err != nil {
			return err
		}
		if !found {
			return errorf(KindNotFound, "no SE %s is enrolled", seID)
		}
		se = prev
		se.MSI = msi
		if in.MSIType != "" {
			se.MSIType = in.MSIType
		}
		if in.MNO != "" && in.MNO != prev.MNO {
			if _, found, err := tx.MNO(in.MNO); err != nil {
				return err
			} else if !found {
				return invalidField("mno", "no MNO %q is enrolled: enroll the MNO first", in.MNO)
			}
			se.MNO = in.MNO
		}
		if err := checkMSIFree(tx, se); err != nil {
			return err
		}
		if prev.SameContent(se) {
			se = prev
			return nil
		}
		se.UpdatedAt = r.Now()
		if err := tx.SaveSE(se, &prev); err != nil {
			return err
		}
		sps, err := spsPresent(tx, se)
		if err != nil {
			return err
		}
		for _, sp := range sps {
			if err := tx.NotifyMSIChanged(sp, se, se.UpdatedAt); err != nil {
				return err
			}
		}
		return nil
	})
	return se, err
}
