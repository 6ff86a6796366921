package app

import (
	"fmt"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"

	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// Procedures (docs/content-management.md): pre-personalize, the service life
// cycle, lock-se/unlock-se and audits. A procedure takes its SE exactly like a
// conversation: it is stored as a conversation record of kind procedure, holds
// the SE through the same index, waits in the same queue, and frees the SE
// through the same release (which serves the next waiting request). Every
// step commits the procedure record with the step's effects and its next
// script in one transaction.

// NewProcedure maps the registry's ProcedureRequested to a procedure with id.
func NewProcedure(id string, ev events.ProcedureRequested) *domain.Procedure {
	return &domain.Procedure{
		ID: id, Kind: ev.Kind, Request: ev.Request, SEID: ev.SE.SEID, MNOID: ev.MNO.MNOID,
		OTACarrier: ev.MNO.OTACarrier, MNOMaxAPDUsPerScript: ev.MNO.MaxAPDUsPerScript,
		Configuration: ev.SE.Configuration, Service: ev.Service, ServiceQualifier: ev.ServiceQualifier,
		SDAID: ev.SecurityDomainAID, SEStatus: ev.SEStatus, PreIssued: ev.SE.PreIssuedSPDomains,
		ReceivedAt: ev.ReceivedAt, ValidUntil: ev.ValidUntil,
	}
}

// RequestProcedure runs a procedure the registry found eligible: at once on a
// free SE; on a held SE an SP procedure without validitySeconds is answered
// CONVERSATION_BUSY, one with validitySeconds waits like a waiting begin, and
// an operator procedure always waits (ahead of the SPs). get-service-state
// needs no card step and is answered at once.
func (s *Service) RequestProcedure(uow UnitOfWork, p *domain.Procedure) (Report, error) {
	var r Report
	now := s.now()
	if cerr := p.Validate(); cerr != nil {
		if p.Operator() {
			return r, fmt.Errorf("%w: operator procedure %s on SE %s: %s", ErrUnprocessable, p.Kind, p.SEID, cerr.Message)
		}
		return r, r.refuse(p.Request.Op, uow, p.Request, p.SEID, cerr)
	}
	if !p.NeedsSE() {
		_, err := s.startProcedure(uow, p, now, &r)
		return r, err
	}
	if p.ExpiredAt(now) {
		return r, r.refuse(p.Request.Op, uow, p.Request, p.SEID, p.Expired(false))
	}
	occupied, err := s.settle(uow, p.SEID, now, &r)
	if err != nil {
		return r, err
	}
	if !occupied {
		_, err := s.startProcedure(uow, p, now, &r)
		return r, err
	}
	if !p.Operator() && p.ValidUntil.IsZero() {
		busy, err := s.busy(uow, p.SEID)
		if err != nil {
			return r, err
		}
		return r, r.refuse(p.Request.Op, uow, p.Request, p.SEID, busy)
	}
	r.Queued++
	return r, uow.EnqueueBegin(domain.WaitingBegin{Procedure: p, EnqueuedAt: now})
}

// content is the SE's content as the procedure sees it (with the SE's
// pre-issued SDs).
func (s *Service) content(uow UnitOfWork, seID string, preIssued []events.PreIssuedSD) (domain.Content, error) {
	c, err := uow.Content(seID)
	if err != nil {
		return c, err
	}
	c.PreIssued = preIssued
	return c, nil
}

// startProcedure starts p on its (free) SE. It reports whether p now holds
// the SE (false: it was answered without a card step).
func (s *Service) startProcedure(uow UnitOfWork, p *domain.Procedure, now time.Time, r *Report) (bool, error) {
	content, err := s.content(uow, p.SEID, p.PreIssued)
	if err != nil {
		return false, err
	}
	o := p.Start(content, s.NewScriptID(), now)
	if o.Done {
		r.ProceduresEnded = append(r.ProceduresEnded, procedureRef(p, o))
		return false, s.apply(uow, p, content, o, now, r)
	}
	c := domain.OpenProcedure(p, now)
	if err := uow.SaveConversation(c); err != nil {
		return false, err
	}
	if err := uow.SetOpenConversation(p.SEID, c.ID); err != nil {
		return false, err
	}
	r.ProceduresStarted = append(r.ProceduresStarted, procedureRef(p, domain.Outcome{}))
	return true, s.apply(uow, p, content, o, now, r)
}

// completeProcedureStep advances the procedure c with the result of its
// running step: next step, compensation, or the end (SE freed, next waiting
// request served). A completion of a script that is not the running step
// changes nothing.
func (s *Service) completeProcedureStep(uow UnitOfWork, c *domain.Conversation, done ScriptDone, r *Report) error {
	p := c.Procedure
	if p == nil {
		return fmt.Errorf("%w: procedure record %s has no procedure state", ErrUnprocessable, c.ID)
	}
	now := s.now()
	content, err := s.content(uow, p.SEID, p.PreIssued)
	if err != nil {
		return err
	}
	o, ok := p.Complete(done.ScriptID, domain.StepResult{Response: done.Response, TemporaryKeys: done.TemporaryKeys},
		content, s.NewScriptID(), now)
	if !ok {
		r.Notes = append(r.Notes, fmt.Sprintf("completion of script %s ignored: not the running step of procedure %s", done.ScriptID, p.ID))
		return nil
	}
	r.ScriptsCompleted++
	if o.Done {
		c.CloseProcedure(now)
		r.ProceduresEnded = append(r.ProceduresEnded, procedureRef(p, o))
	}
	if err := uow.SaveConversation(c); err != nil {
		return err
	}
	if err := s.apply(uow, p, content, o, now, r); err != nil {
		return err
	}
	if o.Done {
		return s.release(uow, c, now, r)
	}
	return nil
}

func procedureRef(p *domain.Procedure, o domain.Outcome) ProcedureRef {
	ref := ProcedureRef{ProcedureID: p.ID, SEID: p.SEID, Kind: p.Kind}
	if o.Done {
		switch {
		case p.Operator():
			ref.Result = "done"
		case o.Answer != nil && o.Answer.Err != nil:
			ref.Result = "failed"
		default:
			ref.Result = "success"
		}
	}
	return ref
}

// apply commits an outcome's effects in the procedure's transaction: state
// changes, then se-status-changed to every SP on the SE (lock-se, unlock-se),
// service-state-changed for every state change, ContentChanged per SP
// touched (or the audit), the next script, and the SP's answer.
func (s *Service) apply(uow UnitOfWork, p *domain.Procedure, before domain.Content, o domain.Outcome, now time.Time, r *Report) error {
	after, err := s.saveChanges(uow, p.SEID, before, o.Instances, o.SDs)
	if err != nil {
		return err
	}
	r.Notes = append(r.Notes, o.Notes...)
	if o.SEStatus != "" {
		seen := map[string]bool{}
		for _, sp := range append(before.SPs(), after.SPs()...) {
			if seen[sp] {
				continue
			}
			seen[sp] = true
			if err := uow.NotifySEStatus(contract.SEStatusChanged{SPID: sp, SEID: p.SEID, Status: o.SEStatus, ChangedAt: now}); err != nil {
				return err
			}
		}
	}
	if err := s.notifyAndPublish(uow, p.SEID, after, o.Instances, o.SDs, now, r); err != nil {
		return err
	}
	if o.Audit != nil {
		if err := uow.PublishContent(events.ContentChanged{SEID: p.SEID, Services: []events.InstanceContent{},
			Audit: o.Audit, ChangedAt: now}); err != nil {
			return err
		}
	}
	if sc := o.Script; sc != nil {
		limits := s.Policy.LimitsFor(p.OTACarrier, p.MNOMaxAPDUsPerScript)
		central := p.CentralSD()
		r.ScriptsRequested++
		if err := uow.RequestScript(events.ScriptRequested{
			Request: p.Request, ConversationID: p.ID, ScriptID: sc.ScriptID, SEID: p.SEID, MNO: p.MNOID,
			TargetAID: central, Commands: sc.Commands, Securing: contract.SecuringCentral, ContinueOnError: sc.ContinueOnError,
			MaxAPDUsPerScript: limits.MaxAPDUsPerScript, MaxScriptBytes: limits.MaxScriptBytes,
			Procedure: &events.ProcedureScript{ProcedureID: p.ID, Step: sc.Step, SecurityDomainAID: central,
				TemporaryKeys: sc.TemporaryKeys},
		}); err != nil {
			return err
		}
	}
	if a := o.Answer; a != nil && !p.Operator() {
		if a.Err != nil {
			r.Refused = append(r.Refused, Refusal{Op: p.Request.Op, Code: a.Err.Code})
		}
		return uow.Reply(p.Request, p.SEID, a.Body)
	}
	return nil
}

// saveChanges stores instance and SD changes and returns the content after them.
func (s *Service) saveChanges(uow UnitOfWork, seID string, before domain.Content, inst []domain.InstanceChange,
	sds []domain.SDChange) (domain.Content, error) {
	for _, ch := range inst {
		var err error
		if ch.After == nil {
			err = uow.DeleteInstance(*ch.Before)
		} else {
			err = uow.SaveInstance(*ch.After)
		}
		if err != nil {
			return before, err
		}
	}
	for _, ch := range sds {
		var err error
		if ch.Removed {
			err = uow.DeleteSD(seID, ch.SD.AID)
		} else {
			err = uow.SaveSD(ch.SD)
		}
		if err != nil {
			return before, err
		}
	}
	return before.Apply(domain.Outcome{Instances: inst, SDs: sds}), nil
}

// notifyAndPublish sends service-state-changed for every state change and a
// ContentChanged snapshot for every SP whose content changed.
func (s *Service) notifyAndPublish(uow UnitOfWork, seID string, after domain.Content, inst []domain.InstanceChange,
	sds []domain.SDChange, now time.Time, r *Report) error {
	var sps []string
	touched := map[string]bool{}
	touch := func(sp string) {
		if sp != "" && !touched[sp] {
			touched[sp] = true
			sps = append(sps, sp)
		}
	}
	for _, ch := range inst {
		touch(ch.Subject().SPID)
		if !ch.StateChanged() {
			continue
		}
		r.StateChanges++
		if err := uow.NotifyServiceState(ch.Notification(now)); err != nil {
			return err
		}
	}
	for _, ch := range sds {
		touch(ch.SD.SPID)
	}
	for _, sp := range sps {
		if err := uow.PublishContent(after.Snapshot(seID, sp, now)); err != nil {
			return err
		}
	}
	return nil
}

// personalize applies the end of a successful personalization conversation:
// the SP's installed instances it targeted become personalized.
func (s *Service) personalize(uow UnitOfWork, c *domain.Conversation, now time.Time, r *Report) error {
	if c.RequestedOperation != contract.OperationPersonalization || c.Outcome != contract.OutcomeSuccess {
		return nil
	}
	before, err := uow.Content(c.SEID)
	if err != nil {
		return err
	}
	changes := domain.Personalize(before, c.SPID, c.TargetAID, now)
	if len(changes) == 0 {
		return nil
	}
	after, err := s.saveChanges(uow, c.SEID, before, changes, nil)
	if err != nil {
		return err
	}
	return s.notifyAndPublish(uow, c.SEID, after, changes, nil, now, r)
}

// rotateKeys records key rotations the script router reported for an SP's
// script: the SP holds its SD's keys now.
func (s *Service) rotateKeys(uow UnitOfWork, c *domain.Conversation, rotations []events.KeyRotation, r *Report) error {
	if len(rotations) == 0 {
		return nil
	}
	now := s.now()
	before, err := uow.Content(c.SEID)
	if err != nil {
		return err
	}
	var sds []domain.SDChange
	for _, kr := range rotations {
		sds = append(sds, domain.RotateKeys(before, c.SEID, c.SPID, kr, now))
	}
	after, err := s.saveChanges(uow, c.SEID, before, nil, sds)
	if err != nil {
		return err
	}
	return s.notifyAndPublish(uow, c.SEID, after, nil, sds, now, r)
}
