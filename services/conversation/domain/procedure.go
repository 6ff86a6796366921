package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
)

// Kinds of records in the conversations bucket: an SP's conversation, or a
// central TSM procedure holding the SE like a conversation does.
const (
	KindConversation = ""
	KindProcedure    = "procedure"
)

// Steps of procedures: each is one script the script router runs through the
// card's central SD (docs/content-management.md, "Procedures and their card
// steps").
const (
	StepCreateSD        = "create-sd"
	StepInstallInstance = "install-instance"
	StepVerify          = "verify"
	StepLock            = "lock"
	StepUnlock          = "unlock"
	StepDeleteInstance  = "delete-instance"
	StepDeleteSD        = "delete-sd"
	StepAudit           = "audit"
	// StepCompensate deletes what a failed pre-personalize created.
	StepCompensate = "compensate"
	// StepCleanup starts a pre-personalize of an in-error instance: it
	// deletes what an earlier, failed attempt may have left on the card (the
	// instance, and the SD when the central TSM created it and still holds its
	// keys), so the new attempt starts from a clean card and the SP gets fresh
	// temporary keys.
	StepCleanup = "cleanup"
)

// MaxUnreachableRetries is how often a step whose script did not reach the
// card at all is sent again before the procedure gives up on it: the
// compensation of pre-personalize, lock-se, unlock-se and audits. A step of
// the normal path that cannot reach the card fails at once (and
// pre-personalize compensates).
const MaxUnreachableRetries = 3

// Phases of a procedure.
const (
	PhaseRunning      = "running"
	PhaseCompensating = "compensating"
	PhaseDone         = "done"
)

// Procedure is a central TSM operation on one SE, run as a sequence of
// durable steps while it holds the SE (as a conversation record of kind
// procedure). It is committed with every step: a restarted service continues
// from the step in flight when its ScriptCompleted arrives.
type Procedure struct {
	ID   string `json:"procedureId"`
	Kind string `json:"kind"`
	// Request is the SP request to answer (empty SPID: an operator procedure).
	Request              events.RequestRef          `json:"request"`
	SEID                 string                     `json:"seId"`
	MNOID                string                     `json:"mnoId"`
	OTACarrier           string                     `json:"otaCarrier"`
	MNOMaxAPDUsPerScript int                        `json:"mnoMaxApdusPerScript,omitempty"`
	Configuration        string                     `json:"configuration"`
	Service              *events.ServiceRecord      `json:"service,omitempty"`
	ServiceQualifier     *contract.ServiceQualifier `json:"serviceQualifier,omitempty"`
	// SDAID is the SP's SD AID from its registry record.
	SDAID string `json:"sdAid,omitempty"`
	// SEStatus is the new SE status of lock-se and unlock-se.
	SEStatus   string               `json:"seStatus,omitempty"`
	PreIssued  []events.PreIssuedSD `json:"preIssued,omitempty"`
	ReceivedAt time.Time            `json:"receivedAt"`
	ValidUntil time.Time            `json:"validUntil,omitempty"`

	Phase string `json:"phase,omitempty"`
	// Plan is the steps of the normal path; Next the index of the next one.
	Plan    []string       `json:"plan,omitempty"`
	Next    int            `json:"next"`
	Running *ProcedureStep `json:"running,omitempty"`
	// History lists the steps run, in order.
	History []StepRecord `json:"history,omitempty"`
	// CreateSDTried and InstallTried say what compensation must delete.
	CreateSDTried bool `json:"createSdTried,omitempty"`
	InstallTried  bool `json:"installTried,omitempty"`
	// SDToDelete is the SP SD terminate-service deletes after the last instance.
	SDToDelete string `json:"sdToDelete,omitempty"`
	// TemporaryKeys are the wrapped keys of the SD create-sd made (for the SP
	// only; wrapped under its key-transport key).
	TemporaryKeys *contract.TemporaryKeys `json:"temporaryKeys,omitempty"`
	// Failure is the error the SP is answered with when the normal path failed.
	Failure   *contract.Error `json:"failure,omitempty"`
	StartedAt time.Time       `json:"startedAt,omitempty"`
	EndedAt   time.Time       `json:"endedAt,omitempty"`
}

// ProcedureStep is the step whose script is with the script router.
type ProcedureStep struct {
	Step            string   `json:"step"`
	ScriptID        string   `json:"scriptId"`
	Commands        []string `json:"commands"`
	ContinueOnError bool     `json:"continueOnError,omitempty"`
	TemporaryKeys   bool     `json:"temporaryKeys,omitempty"`
	// Targets are the instances the commands address, one per command
	// (lock-se, unlock-se).
	Targets []InstanceRef `json:"targets,omitempty"`
	// Attempt counts sends of this step (1 the first).
	Attempt   int       `json:"attempt"`
	StartedAt time.Time `json:"startedAt"`
}

// InstanceRef names an instance on the procedure's SE.
type InstanceRef struct {
	SPID      string             `json:"spId"`
	ServiceID contract.ServiceID `json:"serviceId"`
}

// StepRecord is a finished step.
type StepRecord struct {
	Step     string    `json:"step"`
	ScriptID string    `json:"scriptId"`
	Attempt  int       `json:"attempt"`
	Result   string    `json:"result"`
	EndedAt  time.Time `json:"endedAt"`
	Failure  string    `json:"failure,omitempty"`
}

// Script is a step's script to hand to the script router.
type Script struct {
	Step            string
	ScriptID        string
	Commands        []string
	ContinueOnError bool
	// TemporaryKeys asks the router for fresh temporary keys of the SP SD.
	TemporaryKeys *events.TemporaryKeysRequest
}

// Answer is the one final response to an SP procedure.
type Answer struct {
	// Body is a contract.PrePersonalizeResponse, contract.ServiceStateResponse
	// or contract.FailureBody.
	Body any
	// Err is the failure answered (nil on success).
	Err *contract.Error
}

// Outcome is what starting or advancing a procedure decided.
type Outcome struct {
	// Script is the next step to request (nil: none).
	Script    *Script
	Instances []InstanceChange
	SDs       []SDChange
	// Answer is the SP's final response (nil: none now, or an operator procedure).
	Answer *Answer
	// SEStatus, when set, is sent as se-status-changed to every SP with an SD
	// or an instance on the SE, before the service-state-changed notifications.
	SEStatus string
	// Audit is the card content an audit read.
	Audit *events.CardAudit
	// Done: the procedure ended and frees the SE.
	Done bool
	// Notes say, for logs, what did not go as planned (no data values).
	Notes []string
}

// StepResult is the script router's ScriptCompleted of a step.
type StepResult struct {
	Response      contract.SendScriptResponse
	TemporaryKeys *contract.TemporaryKeys
}

// Operator reports whether the procedure was started by the operator (no SP
// to answer).
func (p *Procedure) Operator() bool { return p.Request.SPID == "" }

// ExpiredAt reports whether the procedure's validitySeconds ran out by now.
func (p *Procedure) ExpiredAt(now time.Time) bool {
	return !p.ValidUntil.IsZero() && !now.Before(p.ValidUntil)
}

// CentralSD is the AID of the card's central SD, which every step goes through.
func (p *Procedure) CentralSD() string {
	return strings.ToUpper(fmt.Sprintf("%X", card.CentralSD(card.Config(p.Configuration))))
}

func (p *Procedure) serviceID() contract.ServiceID {
	if p.Service == nil {
		return contract.ServiceID{}
	}
	return contract.ServiceID{Number: p.Service.Number, Version: p.Service.Version}
}

func (p *Procedure) serviceName() string {
	id := p.serviceID()
	return "service " + id.Number + "/" + id.Version
}

// Validate checks what a procedure needs before it can start. The error is
// the answer to the SP (or, for an operator procedure, the reason logged).
func (p *Procedure) Validate() *contract.Error {
	switch p.Kind {
	case events.ProcedurePrePersonalize, events.ProcedureActivate, events.ProcedureSuspend, events.ProcedureResume,
		events.ProcedureTerminate, events.ProcedureGetState:
		if p.Operator() {
			return contract.Errorf(contract.CodeInternalError, "procedure %s needs an SP request", p.Kind)
		}
		if p.Service == nil || p.Service.Number == "" || p.Service.Version == "" {
			return contract.Errorf(contract.CodeInternalError,
				"the registry passed no catalog entry for this request; retry later or ask the operator")
		}
		if p.Service.SPID != "" && p.Service.SPID != p.Request.SPID {
			return contract.Errorf(contract.CodeNotAllowed, "%s belongs to another SP; use a service of your own catalog",
				p.serviceName())
		}
		if p.Kind == events.ProcedurePrePersonalize {
			if _, err := aidBytes("", p.SDAID); err != nil {
				return contract.Errorf(contract.CodeInternalError,
					"SP %s has no security domain AID in the registry; ask the operator to fix its record", p.Request.SPID)
			}
			if _, err := InstallInstanceCommands(p.Service.ELFAID, p.Service.ModuleAID, p.Service.InstanceAID,
				p.Service.InstallParams, p.SDAID); err != nil {
				return contract.Errorf(contract.CodeInternalError, "catalog entry of %s is unusable (%v); ask the operator to fix it",
					p.serviceName(), err)
			}
		}
	case events.ProcedureLockSE, events.ProcedureUnlockSE, events.ProcedureAudit:
	default:
		return contract.Errorf(contract.CodeInvalidArgument, "procedure kind %q is not known", p.Kind)
	}
	if !card.Config(p.Configuration).Valid() && p.Kind != events.ProcedureGetState {
		return contract.Errorf(contract.CodeInternalError,
			"SE %s has no valid configuration (%q) in the registry; ask the operator to fix its record", p.SEID, p.Configuration)
	}
	if p.MNOID == "" && p.Kind != events.ProcedureGetState {
		return contract.Errorf(contract.CodeInternalError, "SE %s has no MNO in the registry; ask the operator to fix its record", p.SEID)
	}
	return nil
}

// NeedsSE reports whether the procedure must hold the SE. get-service-state
// reads the central TSM's own state only and is answered at once.
func (p *Procedure) NeedsSE() bool { return p.Kind != events.ProcedureGetState }

// Expired is the answer to an SP procedure whose validitySeconds ran out.
func (p *Procedure) Expired(waited bool) *contract.Error {
	if waited {
		return contract.Errorf(contract.CodeExpired,
			"SE %s stayed busy beyond the request's validitySeconds; retry later or set a longer validitySeconds", p.SEID)
	}
	return contract.Errorf(contract.CodeExpired, "the %s request was not processed within its validitySeconds", p.Request.Op)
}

// BusyWithProcedure is the answer to a begin-conversation or an SP procedure
// without validitySeconds while a procedure holds the SE.
func BusyWithProcedure(seID, kind string) *contract.Error {
	return contract.Errorf(contract.CodeConversationBusy,
		"SE %s is busy with a %s operation; retry later or set validitySeconds to wait for it", seID, kind)
}

// fail answers an SP procedure with err and ends it.
func (p *Procedure) fail(err *contract.Error, now time.Time) Outcome {
	p.Phase = PhaseDone
	p.EndedAt = now
	o := Outcome{Done: true}
	if !p.Operator() {
		o.Answer = &Answer{Body: contract.FailureBody{Result: contract.Failure(err)}, Err: err}
	}
	return o
}

// stateAnswer ends an SP procedure with a ServiceStateResponse.
func (p *Procedure) stateAnswer(inst *Instance, state string, now time.Time) *Answer {
	id := p.serviceID()
	r := contract.ServiceStateResponse{Result: contract.Success(), SEID: p.SEID, ServiceID: &id, State: state}
	if inst != nil {
		r.InstanceAID = strings.ToUpper(inst.InstanceAID)
		if state == inst.State {
			r.Reason = inst.Reason
		}
	}
	return &Answer{Body: r}
}

func (p *Procedure) done(o Outcome, now time.Time) Outcome {
	p.Phase = PhaseDone
	p.EndedAt = now
	o.Done = true
	return o
}

// Start begins the procedure on the SE it now holds (or, for
// get-service-state, without it): it checks the preconditions against the
// SE's content and returns the first step's script, or the answer when there
// is no card step. scriptID is the id of that first script.
func (p *Procedure) Start(c Content, scriptID string, now time.Time) Outcome {
	p.StartedAt = now
	p.Phase = PhaseRunning
	if cerr := p.Validate(); cerr != nil {
		return p.fail(cerr, now)
	}
	sp := p.Request.SPID
	svc := p.serviceID()
	var inst *Instance
	if !p.Operator() {
		inst = c.Instance(sp, svc)
	}
	notDeployed := func() Outcome {
		return p.fail(contract.Errorf(contract.CodeNotFound, "%s is not deployed on SE %s; pre-personalize it first",
			p.serviceName(), p.SEID), now)
	}
	switch p.Kind {
	case events.ProcedureGetState:
		if !inst.Deployed() {
			return p.done(Outcome{Answer: p.stateAnswer(nil, contract.StateNotDeployed, now)}, now)
		}
		return p.done(Outcome{Answer: p.stateAnswer(inst, inst.State, now)}, now)

	case events.ProcedurePrePersonalize:
		if inst.Deployed() && inst.State != contract.StateInError {
			return p.fail(contract.Errorf(contract.CodeAlreadyExists,
				"%s is already deployed on SE %s (state %s); terminate it first to deploy it again",
				p.serviceName(), p.SEID, inst.State), now)
		}
		if sd := c.SD(p.SDAID); sd != nil && sd.SPID != sp {
			return p.fail(contract.Errorf(contract.CodeNotAllowed,
				"security domain %s on SE %s belongs to another SP; ask the operator to check your SD AID", p.SDAID, p.SEID), now)
		}
		p.Plan = nil
		sdGone := p.existingSD(c) == nil
		if inst.Deployed() && inst.State == contract.StateInError {
			p.Plan = append(p.Plan, StepCleanup)
			if sd := p.cleanupSD(c); sd != "" {
				p.SDToDelete, sdGone = sd, true
			}
		}
		if sdGone {
			p.Plan = append(p.Plan, StepCreateSD)
		}
		p.Plan = append(p.Plan, StepInstallInstance)

	case events.ProcedureActivate:
		switch {
		case !inst.Deployed():
			return notDeployed()
		case inst.State == contract.StateActive:
			return p.done(Outcome{Answer: p.stateAnswer(inst, contract.StateActive, now)}, now)
		case inst.State != contract.StatePersonalized:
			return p.fail(p.notAllowed(inst, "activate"), now)
		}
		p.Plan = []string{StepVerify}

	case events.ProcedureSuspend:
		switch {
		case !inst.Deployed():
			return notDeployed()
		case inst.State != contract.StateInstalled && inst.State != contract.StatePersonalized && inst.State != contract.StateActive:
			return p.fail(p.notAllowed(inst, "suspend"), now)
		}
		p.Plan = []string{StepLock}

	case events.ProcedureResume:
		switch {
		case !inst.Deployed():
			return notDeployed()
		case inst.State != contract.StateSuspended:
			return p.fail(p.notAllowed(inst, "resume"), now)
		case inst.LockedBySE:
			return p.fail(contract.Errorf(contract.CodeNotAllowed,
				"%s on SE %s was suspended because the SE was reported lost or stolen; it resumes when the operator reports the SE found",
				p.serviceName(), p.SEID), now)
		}
		p.Plan = []string{StepUnlock}

	case events.ProcedureTerminate:
		if !inst.Deployed() {
			return notDeployed()
		}
		p.Plan = []string{StepDeleteInstance}

	case events.ProcedureLockSE:
		p.Plan = []string{StepLock}
	case events.ProcedureUnlockSE:
		p.Plan = []string{StepUnlock}
	case events.ProcedureAudit:
		p.Plan = []string{StepAudit}
	}
	return p.advance(Outcome{}, c, scriptID, now)
}

// cleanupSD is the SD a cleanup deletes: the SP's SD the central TSM created
// and still holds the keys of, with no other instance of the SP in it ("" if
// none).
func (p *Procedure) cleanupSD(c Content) string {
	sd := c.SD(p.SDAID)
	if sd == nil || !sd.CreatedByCentral || sd.SPID != p.Request.SPID || sd.KeysHeldBy != events.KeysHeldByCentral {
		return ""
	}
	for _, other := range c.InstancesOf(p.Request.SPID) {
		if other.ServiceID != p.serviceID() {
			return ""
		}
	}
	return strings.ToUpper(sd.AID)
}

// existingSD is the SP's SD with the registry's AID: a record, or a
// pre-issued SD of the SP.
func (p *Procedure) existingSD(c Content) *SecurityDomain {
	if sd := c.SD(p.SDAID); sd != nil {
		return sd
	}
	for _, pi := range c.PreIssued {
		if pi.SPID == p.Request.SPID && SameAID(pi.AID, p.SDAID) {
			return &SecurityDomain{SEID: p.SEID, AID: strings.ToUpper(pi.AID), SPID: pi.SPID,
				KeyVersion: PreIssuedKeyVersion, KeysHeldBy: events.KeysHeldBySP}
		}
	}
	return nil
}

// notAllowed is the answer when the instance's state does not allow op.
func (p *Procedure) notAllowed(inst *Instance, op string) *contract.Error {
	var hint string
	switch {
	case op == "suspend" && inst.State == contract.StateSuspended:
		hint = "it is suspended already"
	case op == "resume":
		hint = "only a suspended service can be resumed"
	case inst.State == contract.StateInstalled:
		hint = "personalize it in a personalization conversation first"
	case inst.State == contract.StateSuspended:
		hint = "resume it first"
	case inst.State == contract.StateInError:
		hint = "pre-personalize it again or terminate it"
	default:
		hint = "check its state with get-service-state"
	}
	return contract.Errorf(contract.CodeNotAllowed, "cannot %s %s on SE %s: it is %s; %s",
		op, p.serviceName(), p.SEID, inst.State, hint)
}

// advance launches the next planned step, or ends the procedure when the plan
// is done (answering with the final state).
func (p *Procedure) advance(o Outcome, c Content, scriptID string, now time.Time) Outcome {
	for p.Next < len(p.Plan) {
		step := p.Plan[p.Next]
		p.Next++
		s, err := p.buildStep(step, c, now)
		if err != nil {
			return p.done(p.withAnswer(o, p.failAnswer(contract.Errorf(contract.CodeInternalError,
				"cannot build the %s step: %v; ask the operator", step, err))), now)
		}
		if s == nil {
			// Nothing to do on the card for this step (lock-se with no
			// instance to lock): apply it as done.
			var fin Outcome
			fin, _ = p.finishStep(step, nil, c, now)
			o = merge(o, fin)
			c = c.Apply(fin)
			if fin.Done {
				return o
			}
			continue
		}
		s.ScriptID = scriptID
		s.Attempt = 1
		s.StartedAt = now
		p.Running = s
		o.Script = p.script(s)
		return o
	}
	return o
}

func (p *Procedure) withAnswer(o Outcome, a *Answer) Outcome {
	if !p.Operator() {
		o.Answer = a
	}
	return o
}

func (p *Procedure) failAnswer(err *contract.Error) *Answer {
	return &Answer{Body: contract.FailureBody{Result: contract.Failure(err)}, Err: err}
}

func merge(a, b Outcome) Outcome {
	a.Instances = append(a.Instances, b.Instances...)
	a.SDs = append(a.SDs, b.SDs...)
	a.Notes = append(a.Notes, b.Notes...)
	if b.Script != nil {
		a.Script = b.Script
	}
	if b.Answer != nil {
		a.Answer = b.Answer
	}
	if b.SEStatus != "" {
		a.SEStatus = b.SEStatus
	}
	if b.Audit != nil {
		a.Audit = b.Audit
	}
	a.Done = a.Done || b.Done
	return a
}

func (p *Procedure) script(s *ProcedureStep) *Script {
	out := &Script{Step: s.Step, ScriptID: s.ScriptID, Commands: append([]string(nil), s.Commands...),
		ContinueOnError: s.ContinueOnError}
	if s.TemporaryKeys {
		out.TemporaryKeys = &events.TemporaryKeysRequest{SPID: p.Request.SPID, SecurityDomainAID: strings.ToUpper(p.SDAID),
			KeyVersion: TemporaryKeyVersion}
	}
	return out
}

// buildStep returns the commands of a step (nil when there is nothing to send).
func (p *Procedure) buildStep(step string, c Content, now time.Time) (*ProcedureStep, error) {
	s := &ProcedureStep{Step: step}
	var err error
	sp := p.Request.SPID
	inst := c.Instance(sp, p.serviceID())
	switch step {
	case StepCreateSD:
		p.CreateSDTried = true
		s.TemporaryKeys = true
		s.Commands, err = CreateSDCommands(p.SDAID)
	case StepInstallInstance:
		p.InstallTried = true
		svc := p.Service
		s.Commands, err = InstallInstanceCommands(svc.ELFAID, svc.ModuleAID, svc.InstanceAID, svc.InstallParams, p.SDAID)
	case StepVerify:
		var cmd string
		cmd, err = GetStatusCommand(command.StatusApps, false, inst.InstanceAID)
		s.Commands = []string{cmd}
	case StepLock, StepUnlock:
		if p.Kind == events.ProcedureLockSE || p.Kind == events.ProcedureUnlockSE {
			return p.seLockStep(step, c)
		}
		var cmd string
		if step == StepLock {
			cmd, err = LockCommand(inst.InstanceAID)
		} else {
			cmd, err = UnlockCommand(inst.InstanceAID)
		}
		s.Commands = []string{cmd}
	case StepDeleteInstance:
		var cmd string
		cmd, err = DeleteCommand(inst.InstanceAID)
		s.Commands = []string{cmd}
	case StepDeleteSD:
		var cmd string
		cmd, err = DeleteCommand(p.SDToDelete)
		s.Commands = []string{cmd}
	case StepCleanup:
		s.ContinueOnError = true
		var cmd string
		if cmd, err = DeleteCommand(p.Service.InstanceAID); err == nil {
			s.Commands = []string{cmd}
			if p.SDToDelete != "" {
				cmd, err = DeleteCommand(p.SDToDelete)
				s.Commands = append(s.Commands, cmd)
			}
		}
	case StepAudit:
		s.ContinueOnError = true
		s.Commands = AuditCommands()
	default:
		err = fmt.Errorf("unknown step %q", step)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// seLockStep locks (lock-se) every instance on the SE that is not locked yet,
// or unlocks (unlock-se) the ones lock-se locked: one command per instance,
// continueOnError.
func (p *Procedure) seLockStep(step string, c Content) (*ProcedureStep, error) {
	s := &ProcedureStep{Step: step, ContinueOnError: true}
	for _, x := range c.Instances {
		var cmd string
		var err error
		switch {
		case step == StepLock && lockable(x.State):
			cmd, err = LockCommand(x.InstanceAID)
		case step == StepUnlock && x.LockedBySE:
			cmd, err = UnlockCommand(x.InstanceAID)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s.Commands = append(s.Commands, cmd)
		s.Targets = append(s.Targets, InstanceRef{SPID: x.SPID, ServiceID: x.ServiceID})
	}
	if len(s.Commands) == 0 {
		return nil, nil
	}
	return s, nil
}

// lockable: the states lock-se locks (suspended instances are locked on the
// card already; in-error ones may not be there).
func lockable(state string) bool {
	return state == contract.StateInstalled || state == contract.StatePersonalized || state == contract.StateActive
}

// Complete applies the script router's result of the script scriptID. It
// returns false when that script is not the running step (a duplicate or
// stale completion: nothing changes). nextScriptID is the id the next script
// gets, if there is one.
func (p *Procedure) Complete(scriptID string, res StepResult, c Content, nextScriptID string, now time.Time) (Outcome, bool) {
	s := p.Running
	if s == nil || s.ScriptID != scriptID {
		return Outcome{}, false
	}
	ev := p.evaluate(s, res)
	if s.Step == StepCreateSD && ev.failure == nil && res.TemporaryKeys == nil {
		ev.failure = contract.Errorf(contract.CodeInternalError,
			"%s step %s on SE %s: the script router returned no temporary keys for security domain %s",
			p.Kind, s.Step, p.SEID, p.SDAID)
	}
	rec := StepRecord{Step: s.Step, ScriptID: s.ScriptID, Attempt: s.Attempt, Result: "done", EndedAt: now}
	if ev.failure != nil {
		rec.Result, rec.Failure = "failed", ev.failure.Message
	}
	// Steps that must get through retry while nothing reached the card.
	if ev.unreachable && s.Attempt <= MaxUnreachableRetries && retriesUnreachable(p, s.Step) {
		rec.Result = "unreachable"
		p.History = append(p.History, rec)
		s.ScriptID = nextScriptID
		s.Attempt++
		s.StartedAt = now
		return Outcome{Script: p.script(s), Notes: []string{fmt.Sprintf("%s step did not reach SE %s; sending it again (attempt %d)",
			s.Step, p.SEID, s.Attempt)}}, true
	}
	p.History = append(p.History, rec)
	p.Running = nil
	if p.Phase == PhaseCompensating {
		return p.finishCompensation(s, ev, c, now), true
	}
	if ev.failure != nil && !p.tolerant(s.Step) {
		return p.stepFailed(s, ev, c, nextScriptID, now), true
	}
	o, cont := p.finishStep(s.Step, &stepOutcome{step: s, eval: ev, res: res}, c, now)
	if !cont {
		return o, true
	}
	return p.advance(o, c.Apply(o), nextScriptID, now), true
}

// retriesUnreachable: which steps are sent again when they did not reach the
// card (the others fail at once).
func retriesUnreachable(p *Procedure, step string) bool {
	switch step {
	case StepCompensate, StepAudit:
		return true
	case StepLock, StepUnlock:
		return p.Kind == events.ProcedureLockSE || p.Kind == events.ProcedureUnlockSE
	}
	return false
}

// tolerant steps judge their commands one by one (finishStep) instead of
// failing as a whole.
func (p *Procedure) tolerant(step string) bool {
	switch step {
	case StepAudit, StepDeleteInstance, StepDeleteSD, StepCleanup:
		return true
	case StepLock, StepUnlock:
		return p.Kind == events.ProcedureLockSE || p.Kind == events.ProcedureUnlockSE
	}
	return false
}

type stepOutcome struct {
	step *ProcedureStep
	eval stepEval
	res  StepResult
}

// finishStep applies a step that ran (so, nil: a step with nothing to send).
// cont is true when the plan goes on.
func (p *Procedure) finishStep(step string, so *stepOutcome, c Content, now time.Time) (Outcome, bool) {
	sp := p.Request.SPID
	inst := c.Instance(sp, p.serviceID())
	var o Outcome
	switch p.Kind {
	case events.ProcedurePrePersonalize:
		if step == StepCleanup {
			for i := range so.step.Commands {
				if !so.eval.okOr(i, apdu.SWReferencedDataNotFound) {
					return p.fail(contract.Errorf(contract.CodeSecureElementError,
						"%s on SE %s is in-error and what an earlier attempt left could not be removed (%s); the card is unchanged, try again or ask the operator to audit the SE",
						p.serviceName(), p.SEID, so.eval.failureOr(p, step).Message), now), false
				}
			}
			if p.SDToDelete != "" {
				o.SDs = append(o.SDs, SDChange{SD: SecurityDomain{SEID: p.SEID, AID: p.SDToDelete, SPID: sp}, Removed: true})
			}
			return o, true
		}
		if step == StepCreateSD {
			p.TemporaryKeys = so.res.TemporaryKeys
			o.SDs = append(o.SDs, SDChange{SD: SecurityDomain{SEID: p.SEID, AID: strings.ToUpper(p.SDAID), SPID: sp,
				KeyVersion: TemporaryKeyVersion, KeysHeldBy: events.KeysHeldByCentral, CreatedByCentral: true, UpdatedAt: now}})
			return o, true
		}
		after := Instance{SEID: p.SEID, SPID: sp, ServiceID: p.serviceID(), ServiceQualifier: p.ServiceQualifier,
			InstanceAID: strings.ToUpper(p.Service.InstanceAID), SDAID: strings.ToUpper(p.SDAID),
			State: contract.StateInstalled, UpdatedAt: now}
		o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), After: &after, Cause: p.Request.Op})
		if sd := p.existingSD(c); sd != nil && c.SD(p.SDAID) == nil {
			// A pre-issued SD gets its record with the first instance in it.
			o.SDs = append(o.SDs, SDChange{SD: SecurityDomain{SEID: p.SEID, AID: sd.AID, SPID: sp, KeyVersion: sd.KeyVersion,
				KeysHeldBy: sd.KeysHeldBy, UpdatedAt: now}})
		}
		id := p.serviceID()
		o.Answer = &Answer{Body: contract.PrePersonalizeResponse{Result: contract.Success(), SEID: p.SEID, ServiceID: &id,
			SecurityDomainAID: strings.ToUpper(p.SDAID), InstanceAID: after.InstanceAID, TemporaryKeys: p.TemporaryKeys,
			State: contract.StateInstalled}}
		return p.done(o, now), false

	case events.ProcedureActivate:
		if cerr := verifyInstance(so.eval, inst); cerr != nil {
			return p.fail(cerr, now), false
		}
		after := *inst
		after.State, after.Reason, after.UpdatedAt = contract.StateActive, "", now
		o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), After: &after, Cause: p.Request.Op})
		o.Answer = p.stateAnswer(&after, after.State, now)
		return p.done(o, now), false

	case events.ProcedureSuspend:
		after := *inst
		after.StateBeforeSuspension = inst.State
		after.State, after.Reason, after.UpdatedAt = contract.StateSuspended, "suspended at the SP's request", now
		o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), After: &after, Cause: p.Request.Op})
		o.Answer = p.stateAnswer(&after, after.State, now)
		return p.done(o, now), false

	case events.ProcedureResume:
		after := *inst
		after.State = resumeState(inst)
		after.StateBeforeSuspension, after.Reason, after.UpdatedAt = "", "", now
		o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), After: &after, Cause: p.Request.Op})
		o.Answer = p.stateAnswer(&after, after.State, now)
		return p.done(o, now), false

	case events.ProcedureTerminate:
		if step == StepDeleteInstance {
			if !so.eval.okOr(0, apdu.SWReferencedDataNotFound) {
				return p.fail(so.eval.failureOr(p, step), now), false
			}
			o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), Cause: p.Request.Op})
			sd := c.SD(inst.SDAID)
			if sd != nil && sd.CreatedByCentral && sd.SPID == sp && len(c.InstancesOf(sp)) == 1 {
				p.Plan = append(p.Plan, StepDeleteSD)
				p.SDToDelete = strings.ToUpper(sd.AID)
				return o, true
			}
			o.Answer = p.stateAnswer(nil, contract.StateNotDeployed, now)
			return p.done(o, now), false
		}
		// delete-sd: the instance is gone whatever happens to its SD.
		if so.eval.okOr(0, apdu.SWReferencedDataNotFound) {
			o.SDs = append(o.SDs, SDChange{SD: SecurityDomain{SEID: p.SEID, AID: p.SDToDelete, SPID: sp}, Removed: true})
		} else {
			o.Notes = append(o.Notes, "the SP security domain could not be deleted: "+so.eval.failureOr(p, step).Message)
		}
		o.Answer = p.stateAnswer(nil, contract.StateNotDeployed, now)
		return p.done(o, now), false

	case events.ProcedureLockSE, events.ProcedureUnlockSE:
		o.SEStatus = p.SEStatus
		if so != nil {
			o.Instances, o.Notes = p.applySELock(so, c, now)
		}
		return p.done(o, now), false

	case events.ProcedureAudit:
		audit, notes := parseAudit(so.step, so.res.Response, now)
		audit.ProcedureID = p.Request.RequestID
		o.Audit, o.Notes = audit, notes
		if so.eval.unreachable {
			o.Audit = nil
			o.Notes = append(o.Notes, "audit gave up: "+so.eval.failureOr(p, step).Message)
		}
		return p.done(o, now), false
	}
	return p.done(o, now), false
}

func clonePtr(x *Instance) *Instance {
	if x == nil {
		return nil
	}
	c := *x
	return &c
}

// resumeState is the state an instance returns to when its suspension ends.
func resumeState(inst *Instance) string {
	if inst.StateBeforeSuspension != "" {
		return inst.StateBeforeSuspension
	}
	return contract.StateInstalled
}

// stepFailed handles a failed step of the normal path: pre-personalize starts
// compensation; the other procedures answer the failure and leave the
// instance as it was.
func (p *Procedure) stepFailed(s *ProcedureStep, ev stepEval, c Content, nextScriptID string, now time.Time) Outcome {
	p.Failure = ev.failure
	if p.Kind != events.ProcedurePrePersonalize {
		return p.fail(ev.failure, now)
	}
	var cmds []string
	if p.InstallTried {
		cmd, err := DeleteCommand(p.Service.InstanceAID)
		if err == nil {
			cmds = append(cmds, cmd)
		}
	}
	if p.CreateSDTried {
		cmd, err := DeleteCommand(p.SDAID)
		if err == nil {
			cmds = append(cmds, cmd)
		}
	}
	p.Phase = PhaseCompensating
	if len(cmds) == 0 {
		return p.finishCompensation(&ProcedureStep{Step: StepCompensate}, stepEval{}, c, now)
	}
	p.Running = &ProcedureStep{Step: StepCompensate, ScriptID: nextScriptID, Commands: cmds, ContinueOnError: true,
		Attempt: 1, StartedAt: now}
	return Outcome{Script: p.script(p.Running),
		Notes: []string{fmt.Sprintf("%s step failed on SE %s; compensating", s.Step, p.SEID)}}
}

// finishCompensation ends a failed pre-personalize: the instance is in-error
// with the reason, the SD created for it is gone (6A88 counts as deleted),
// and the SP gets one Failed response naming the failed command and SW.
func (p *Procedure) finishCompensation(s *ProcedureStep, ev stepEval, c Content, now time.Time) Outcome {
	sp := p.Request.SPID
	var o Outcome
	var leftovers []string
	for i, cmd := range s.Commands {
		if ev.okOr(i, apdu.SWReferencedDataNotFound) {
			if p.CreateSDTried && cmd == mustDelete(p.SDAID) {
				o.SDs = append(o.SDs, SDChange{SD: SecurityDomain{SEID: p.SEID, AID: strings.ToUpper(p.SDAID), SPID: sp}, Removed: true})
			}
			continue
		}
		leftovers = append(leftovers, aidOfDelete(cmd))
	}
	msg := p.Failure.Message
	reason := msg
	switch {
	case len(s.Commands) == 0:
	case len(leftovers) == 0:
		msg += "; what this pre-personalize created on the card was removed; pre-personalize again when the cause is fixed"
	default:
		cleanup := "cleaning up failed"
		if ev.unreachable {
			cleanup = "cleaning up could not reach the SE"
		}
		msg += fmt.Sprintf("; %s, the card may still hold %s: the operator should audit the SE", cleanup, strings.Join(leftovers, ", "))
		reason += fmt.Sprintf("; %s (card may still hold %s)", cleanup, strings.Join(leftovers, ", "))
		o.Notes = append(o.Notes, fmt.Sprintf("compensation of %s on SE %s left %s", p.ID, p.SEID, strings.Join(leftovers, ", ")))
	}
	inst := c.Instance(sp, p.serviceID())
	after := Instance{SEID: p.SEID, SPID: sp, ServiceID: p.serviceID(), ServiceQualifier: p.ServiceQualifier,
		InstanceAID: strings.ToUpper(p.Service.InstanceAID), SDAID: strings.ToUpper(p.SDAID), State: contract.StateInError,
		Reason: reason, UpdatedAt: now}
	o.Instances = append(o.Instances, InstanceChange{Before: clonePtr(inst), After: &after, Cause: p.Request.Op})
	err := &contract.Error{Code: p.Failure.Code, Message: msg}
	p.Failure = err
	o.Answer = &Answer{Body: contract.FailureBody{Result: contract.Failure(err)}, Err: err}
	return p.done(o, now)
}

func mustDelete(aid string) string {
	c, _ := DeleteCommand(aid)
	return c
}

// aidOfDelete returns the AID a DELETE command names.
func aidOfDelete(cmd string) string {
	b, err := hexDecode(cmd)
	if err != nil || len(b) < 7 {
		return "?"
	}
	n := int(b[6])
	if len(b) < 7+n {
		return "?"
	}
	return fmt.Sprintf("%X", b[7:7+n])
}

// stepEval is the judgement of a step's script, command by command.
type stepEval struct {
	// responses holds the parsed R-APDU of each command of the step (nil:
	// none, the command did not run).
	responses []*apdu.Response
	// unreachable: nothing ran on the card.
	unreachable bool
	// failure is the first failure (nil: every command succeeded).
	failure *contract.Error
}

// okOr reports whether command i ran and succeeded or answered one of sws.
func (ev stepEval) okOr(i int, sws ...uint16) bool {
	if i >= len(ev.responses) || ev.responses[i] == nil {
		return false
	}
	sw := ev.responses[i].SW
	if events.CommandSucceeded(sw) {
		return true
	}
	for _, x := range sws {
		if sw == x {
			return true
		}
	}
	return false
}

func (ev stepEval) failureOr(p *Procedure, step string) *contract.Error {
	if ev.failure != nil {
		return ev.failure
	}
	return contract.Errorf(contract.CodeSecureElementError, "%s step %s on SE %s failed", p.Kind, step, p.SEID)
}

// evaluate judges a step's result: a command without a response did not run;
// a status word that is not a success (events.CommandSucceeded) fails the
// step with the command and SW named; a failure of the PUT KEY the router
// appends to create-sd fails it too.
func (p *Procedure) evaluate(s *ProcedureStep, res StepResult) stepEval {
	r := res.Response
	ev := stepEval{responses: make([]*apdu.Response, len(s.Commands))}
	for i := range s.Commands {
		if i < len(r.Responses) {
			if x, ok := swOf(r.Responses[i]); ok {
				ev.responses[i] = &x
			}
		}
	}
	where := fmt.Sprintf("%s step %s on SE %s", p.Kind, s.Step, p.SEID)
	routerMsg := "no reason given"
	if r.Error != nil {
		routerMsg = r.Error.Message
	}
	succeeded := r.Status == contract.StatusSuccess || r.Status == contract.StatusWithWarning
	if len(r.Responses) == 0 && !succeeded {
		code := contract.CodeSEInaccessible
		if r.Error != nil && r.Error.Code == contract.CodeSecureElementError {
			code = contract.CodeSecureElementError
		}
		ev.unreachable = true
		ev.failure = contract.Errorf(code, "%s did not reach the card: %s", where, routerMsg)
		return ev
	}
	for i, resp := range ev.responses {
		name := commandName(s.Commands[i])
		switch {
		case resp == nil:
			ev.failure = contract.Errorf(contract.CodeSecureElementError, "%s: command %d %s did not run (%s)",
				where, i+1, name, routerMsg)
		case !events.CommandSucceeded(resp.SW):
			ev.failure = contract.Errorf(contract.CodeSecureElementError, "%s: command %d %s returned SW %04X (%s)",
				where, i+1, name, resp.SW, apdu.StatusText(resp.SW))
		default:
			continue
		}
		return ev
	}
	for _, f := range r.Failed {
		if f.Index >= len(s.Commands) {
			// Never echo the command: the router's PUT KEY carries key data.
			ev.failure = contract.Errorf(contract.CodeSecureElementError,
				"%s: the PUT KEY the script router appended returned SW %s (%s)", where, f.SW, f.Reason)
			return ev
		}
	}
	if r.Status == contract.StatusFailed || r.Status == contract.StatusExpired {
		ev.failure = contract.Errorf(contract.CodeSecureElementError, "%s failed: %s", where, routerMsg)
	}
	return ev
}

// verifyInstance checks the GET STATUS of activate-service: the instance is
// on the card, in the SP's SD, and not locked.
func verifyInstance(ev stepEval, inst *Instance) *contract.Error {
	resp := ev.responses[0]
	entries, err := command.ParseStatusResponse(resp.Data)
	if err != nil {
		return contract.Errorf(contract.CodeSecureElementError,
			"the card's GET STATUS answer for instance %s could not be read (%v); retry activate-service", inst.InstanceAID, err)
	}
	for _, e := range entries {
		if !SameAID(fmt.Sprintf("%X", e.AID), inst.InstanceAID) {
			continue
		}
		switch {
		case !SameAID(fmt.Sprintf("%X", e.AssociatedSD), inst.SDAID):
			return contract.Errorf(contract.CodeSecureElementError,
				"instance %s is in security domain %X on the card, not in %s; ask the operator to audit the SE",
				inst.InstanceAID, e.AssociatedSD, inst.SDAID)
		case e.Locked():
			return contract.Errorf(contract.CodeSecureElementError,
				"instance %s is locked on the card (life cycle %02X); ask the operator to audit the SE", inst.InstanceAID, e.LifeCycle)
		}
		return nil
	}
	return contract.Errorf(contract.CodeSecureElementError,
		"instance %s is not on the card; terminate the service and pre-personalize it again", inst.InstanceAID)
}

// applySELock applies lock-se or unlock-se to each instance its script
// addressed: SW 9000 (or 6A80, the card's answer for a transition to the
// state it already has) changes the instance; another answer leaves it as
// it was, noted.
func (p *Procedure) applySELock(so *stepOutcome, c Content, now time.Time) ([]InstanceChange, []string) {
	var out []InstanceChange
	var notes []string
	for i, t := range so.step.Targets {
		inst := c.Instance(t.SPID, t.ServiceID)
		if inst == nil {
			continue
		}
		if !so.eval.okOr(i, apdu.SWIncorrectData) {
			sw := "no answer"
			if i < len(so.eval.responses) && so.eval.responses[i] != nil {
				sw = fmt.Sprintf("SW %04X", so.eval.responses[i].SW)
			}
			notes = append(notes, fmt.Sprintf("%s could not change instance %s of SP %s on SE %s: %s",
				p.Kind, inst.InstanceAID, inst.SPID, p.SEID, sw))
			continue
		}
		after := *inst
		after.UpdatedAt = now
		if p.Kind == events.ProcedureLockSE {
			after.StateBeforeSuspension = inst.State
			after.State = contract.StateSuspended
			after.LockedBySE = true
			after.Reason = "the SE was reported " + p.SEStatus
		} else {
			after.State = resumeState(inst)
			after.StateBeforeSuspension, after.LockedBySE, after.Reason = "", false, ""
		}
		out = append(out, InstanceChange{Before: clonePtr(inst), After: &after, Cause: CauseSEStatus})
	}
	return out, notes
}

// parseAudit collects the entries of an audit's GET STATUS answers. A GET
// STATUS [next] counts only after a 6310 of the same subset.
func parseAudit(s *ProcedureStep, r contract.SendScriptResponse, now time.Time) (*events.CardAudit, []string) {
	audit := &events.CardAudit{Entries: []events.CardEntry{}, AuditedAt: now}
	var notes []string
	more := map[byte]bool{}
	for i, cmd := range s.Commands {
		b, err := hexDecode(cmd)
		if err != nil || len(b) < 4 || i >= len(r.Responses) {
			continue
		}
		p1, next := b[2], b[3]&0x01 != 0
		resp, ok := swOf(r.Responses[i])
		if !ok {
			continue
		}
		if next && !more[p1] {
			continue
		}
		more[p1] = resp.SW == apdu.SWMoreData
		if resp.SW != apdu.SWOK && resp.SW != apdu.SWMoreData {
			if !next && resp.SW != apdu.SWReferencedDataNotFound {
				notes = append(notes, fmt.Sprintf("audit: GET STATUS P1 %02X answered SW %04X", p1, resp.SW))
			}
			continue
		}
		entries, err := command.ParseStatusResponse(resp.Data)
		if err != nil {
			notes = append(notes, fmt.Sprintf("audit: GET STATUS P1 %02X answer unreadable: %v", p1, err))
			continue
		}
		for _, e := range entries {
			audit.Entries = append(audit.Entries, cardEntry(p1, e))
		}
	}
	for p1, m := range more {
		if m {
			notes = append(notes, fmt.Sprintf("audit: GET STATUS P1 %02X list longer than the script collects", p1))
		}
	}
	return audit, notes
}

func cardEntry(p1 byte, e command.StatusEntry) events.CardEntry {
	ce := events.CardEntry{AID: fmt.Sprintf("%X", e.AID), LifeCycle: fmt.Sprintf("%02X", e.LifeCycle)}
	switch {
	case p1 == command.StatusISD:
		ce.Kind = "isd"
	case p1 == command.StatusELFs || p1 == command.StatusELFsModules:
		ce.Kind = "elf"
	case e.HasPrivileges && e.Privileges.Has(command.PrivSecurityDomain):
		ce.Kind = "sd"
	default:
		ce.Kind = "app"
	}
	if len(e.AssociatedSD) > 0 {
		ce.SecurityDomain = fmt.Sprintf("%X", e.AssociatedSD)
	}
	if e.HasPrivileges {
		ce.Privileges = fmt.Sprintf("%X", e.Privileges.Bytes())
	}
	return ce
}
