package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// ServiceOperation is an SP's pre-personalize, activate-service,
// suspend-service, resume-service, terminate-service or get-service-state
// request, as the SP request port decoded it.
type ServiceOperation struct {
	SPID      string
	RequestID string
	// Op is the operation, also the procedure kind.
	Op string
	// SEID and/or MSI designate the SE (MSI of type MSISDN when alone).
	SEID           string
	MSI            string
	ServiceNumber  string
	ServiceVersion string
	Qualifier      *domain.ServiceQualifier
	ReceivedAt     time.Time
	ValidUntil     time.Time
}

// serviceOps are the SP operations the conversation service runs as
// procedures once the registry has checked them.
var serviceOps = []string{domain.ProcedurePrePersonalize, domain.ProcedureActivate, domain.ProcedureSuspend,
	domain.ProcedureResume, domain.ProcedureTerminate, domain.ProcedureGetState}

// IsServiceOperation reports whether op is one of the service operations.
func IsServiceOperation(op string) bool { return slices.Contains(serviceOps, op) }

// refusedOnLostSE are the operations refused while the SE is lost or stolen:
// they would deploy or re-enable a service on a card out of its owner's hands.
var refusedOnLostSE = []string{domain.ProcedurePrePersonalize, domain.ProcedureActivate, domain.ProcedureResume}

// RequestServiceOperation checks an SP service operation and passes it to
// the conversation service (a ProcedureRequested in tx), or refuses it:
// KindInvalid (a field is missing or malformed), KindNotFound (no such SE or
// catalog entry), KindNotAllowed (the entry is another SP's, or the SE is
// lost or stolen for pre-personalize, activate and resume), KindNoEligibleSE
// (pre-personalize on an SE that fails an eligibility check) and KindConflict
// (pre-personalize of a service the content model shows deployed; the
// conversation service, the system of record, checks again).
func (r *Registry) RequestServiceOperation(tx Tx, in ServiceOperation) error {
	if !IsServiceOperation(in.Op) {
		return errorf(KindInternal, "operation %s is not a service operation", in.Op)
	}
	switch {
	case in.ServiceNumber == "" && in.ServiceVersion == "":
		return invalidField("serviceId", "is required: send {\"number\": ..., \"version\": ...} of a catalog service")
	case in.ServiceNumber == "":
		return invalidField("serviceId.number", "is required: the number of a catalog service")
	case in.ServiceVersion == "":
		return invalidField("serviceId.version", "is required: the version of a catalog service")
	}
	se, err := r.ResolveSE(tx, SEQuery{SEID: in.SEID, MSI: in.MSI})
	if err != nil {
		return err
	}
	svc, found, err := tx.Service(in.ServiceNumber, in.ServiceVersion)
	if err != nil {
		return err
	}
	key := domain.ServiceKey(in.ServiceNumber, in.ServiceVersion)
	if !found {
		return errorf(KindNotFound, "service %s is not in the catalog", key)
	}
	if svc.SPID != in.SPID {
		return errorf(KindNotAllowed, "service %s belongs to another SP: an SP may only operate its own services", key)
	}
	sp, found, err := tx.SP(in.SPID)
	if err != nil {
		return err
	}
	if !found {
		return errorf(KindInternal, "service %s names SP %q, which has no record", key, in.SPID)
	}
	if se.Status.Inaccessible() && slices.Contains(refusedOnLostSE, in.Op) {
		return errorf(KindNotAllowed, "SE %s is reported %s: %s is refused until it is found", se.ID, se.Status, in.Op)
	}
	if in.Op == domain.ProcedurePrePersonalize {
		if why := domain.Ineligibility(se, svc, r.Now()); why != "" {
			return errorf(KindNoEligibleSE, "%s", why)
		}
	}
	content, found, err := tx.SPContent(se.ID, in.SPID)
	if err != nil {
		return err
	}
	if !found {
		content = domain.SPContent{SPID: in.SPID}
	}
	if in.Op == domain.ProcedurePrePersonalize {
		if inst, ok := content.Instance(in.ServiceNumber, in.ServiceVersion); ok && domain.Deployed(inst.State) {
			return errorf(KindConflict, "service %s is already deployed on SE %s (instance %s is %s): terminate it first",
				key, se.ID, inst.InstanceAID, inst.State)
		}
	}
	m, found, err := tx.MNO(se.MNO)
	if err != nil {
		return err
	}
	if !found {
		return errorf(KindInternal, "SE %s names MNO %q, which has no record", se.ID, se.MNO)
	}
	if in.Op == domain.ProcedurePrePersonalize {
		// A service is being deployed: the SP may open conversations on the
		// SE from now on, even before the content snapshot arrives.
		content.PendingSince = r.Now()
		if err := tx.SaveSPContent(se.ID, content); err != nil {
			return err
		}
	}
	return tx.RequestProcedure(domain.ProcedureRequest{Kind: in.Op, SPID: in.SPID, RequestID: in.RequestID, Op: in.Op,
		SE: se, MNO: m, Service: &svc, Qualifier: in.Qualifier, SecurityDomainAID: sp.SecurityDomainAID,
		ReceivedAt: in.ReceivedAt, ValidUntil: in.ValidUntil})
}

// ContentChange is a content snapshot of the conversation service: one SP's
// content on an SE, or (SPID "") an audit of the card.
type ContentChange struct {
	SEID      string
	SPID      string
	SD        *domain.ContentSD
	Instances []domain.ContentInstance
	Audit     *domain.Audit
	ChangedAt time.Time
}

// ApplyContent applies a content snapshot taken from stream sequence seq:
// it replaces the stored snapshot of (SE, SP) unless that one came from a
// later sequence (applied is false then). A snapshot taken after a pending
// pre-personalize started ends the pending state.
func (r *Registry) ApplyContent(tx Tx, seq uint64, c ContentChange) (applied bool, err error) {
	seID, ok := domain.NormalizeSEID(c.SEID)
	if !ok {
		return false, invalidField("seId", "%s", domain.SEIDRule())
	}
	if c.SPID == "" {
		if c.Audit == nil {
			return false, invalidField("audit", "a content change without spId must carry an audit")
		}
		prev, found, err := tx.Audit(seID)
		if err != nil || (found && prev.Seq >= seq) {
			return false, err
		}
		a := *c.Audit
		a.Seq = seq
		return true, tx.SaveAudit(seID, a)
	}
	if !domain.ValidEntityID(c.SPID) {
		return false, invalidField("spId", "an SP id is 1 to 32 characters of a-z, 0-9 and '-'")
	}
	prev, found, err := tx.SPContent(seID, c.SPID)
	if err != nil || (found && prev.Seq >= seq) {
		return false, err
	}
	next := domain.SPContent{SPID: c.SPID, SD: c.SD, Instances: c.Instances, ChangedAt: c.ChangedAt, Seq: seq}
	if found && !prev.PendingSince.IsZero() && !c.ChangedAt.After(prev.PendingSince) {
		next.PendingSince = prev.PendingSince
	}
	return true, tx.SaveSPContent(seID, next)
}

// SEContentView is an SE with its content model, for the admin API.
type SEContentView struct {
	SE      domain.SE
	Content []domain.SPContent
	Audit   *domain.Audit
}

// GetSEContent returns an SE by id with every SP's content and the last audit.
func (r *Registry) GetSEContent(id string) (SEContentView, error) {
	seID, ok := domain.NormalizeSEID(id)
	if !ok {
		return SEContentView{}, invalidField("seId", "%s", domain.SEIDRule())
	}
	var v SEContentView
	err := r.repo.View(func(tx ReadTx) error {
		var err error
		v, err = seContent(tx, seID)
		return err
	})
	return v, err
}

// FindSEContentByMSI is GetSEContent by MSI.
func (r *Registry) FindSEContentByMSI(msiType, msi string) (SEContentView, error) {
	var v SEContentView
	err := r.repo.View(func(tx ReadTx) error {
		id, err := r.LookupSEID(tx, msiType, msi)
		if err != nil {
			return err
		}
		if v, err = seContent(tx, id); err != nil {
			if e, ok := AsError(err); ok && e.Kind == KindNotFound {
				return errorf(KindInternal, "the MSI index names SE %s, which has no record", id)
			}
		}
		return err
	})
	return v, err
}

func seContent(tx ReadTx, seID string) (SEContentView, error) {
	se, found, err := tx.SE(seID)
	if err != nil {
		return SEContentView{}, err
	}
	if !found {
		return SEContentView{}, errorf(KindNotFound, "no SE %s is enrolled", seID)
	}
	v := SEContentView{SE: se}
	if v.Content, err = tx.SEContent(seID); err != nil {
		return v, err
	}
	a, found, err := tx.Audit(seID)
	if err != nil {
		return v, err
	}
	if found {
		v.Audit = &a
	}
	return v, nil
}

// spsPresent lists the SPs with an SD or an instance on se (content model
// and pre-issued SDs), or a service being deployed there, by SP id.
func spsPresent(tx ReadTx, se domain.SE) ([]string, error) {
	content, err := tx.SEContent(se.ID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range content {
		if c.Present() {
			ids = append(ids, c.SPID)
		}
	}
	for _, sd := range se.PreIssuedSPDomains {
		ids = append(ids, sd.SPID)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// RequestAudit asks the conversation service to read the SE's content
// through its central SD; the audit shows in GET /v1/ses/{seId} when done.
// It returns the operation id (the procedure's request id).
func (r *Registry) RequestAudit(id string) (string, error) {
	seID, ok := domain.NormalizeSEID(id)
	if !ok {
		return "", invalidField("seId", "%s", domain.SEIDRule())
	}
	opID := newOperationID()
	err := r.repo.Update(func(tx Tx) error {
		se, m, err := seAndMNO(tx, seID)
		if err != nil {
			return err
		}
		return tx.RequestProcedure(domain.ProcedureRequest{Kind: domain.ProcedureAudit, RequestID: opID,
			Op: domain.OpAudit, SE: se, MNO: m, ReceivedAt: r.Now()})
	})
	return opID, err
}

// seAndMNO reads an SE and its MNO record.
func seAndMNO(tx ReadTx, seID string) (domain.SE, domain.MNO, error) {
	se, found, err := tx.SE(seID)
	if err != nil {
		return se, domain.MNO{}, err
	}
	if !found {
		return se, domain.MNO{}, errorf(KindNotFound, "no SE %s is enrolled", seID)
	}
	m, found, err := tx.MNO(se.MNO)
	if err != nil {
		return se, m, err
	}
	if !found {
		return se, m, errorf(KindInternal, "SE %s names MNO %q, which has no record", se.ID, se.MNO)
	}
	return se, m, nil
}

// newOperationID returns a fresh id for an operator procedure.
func newOperationID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return "op-" + hex.EncodeToString(b[:])
}
