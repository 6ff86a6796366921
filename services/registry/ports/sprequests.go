package ports

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/spport"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// SPRequests handles the registry-requests consumer, which sees every SP
// request: it answers the look-ups, resolves the SE of begin-conversation and
// checks the service operations (pre-personalize, activate-service, ...) for
// the conversation service, and lets the port answer unknown operations and
// malformed requests.
type SPRequests struct {
	Port     *spport.Port
	Registry *app.Registry
	Repo     *adapters.Repository
	Log      *slog.Logger
}

// Handle is the bus handler of topology.RegistryRequests.
func (h *SPRequests) Handle(ctx context.Context, d *bus.Delivery) error {
	_, _, op, _ := topology.ParseSPSubject(d.Subject)
	switch {
	case op == topology.OpSendScript || op == topology.OpEndConversation:
		// The conversation service owns and answers these.
		return nil
	case op == topology.OpGetSEID:
		return h.Port.Handle(ctx, d, nil, h.getSEID)
	case op == topology.OpGetSEData:
		return h.Port.Handle(ctx, d, nil, h.getSEData)
	case op == topology.OpBeginConversation:
		// Forward mode: the conversation service answers success and keeps the
		// request's idempotency record; the registry only answers its refusals.
		return h.Port.HandleForward(ctx, d, nil, h.beginConversation)
	case app.IsServiceOperation(op):
		// Forward mode as begin-conversation: the conversation service runs
		// the procedure and answers; the registry answers its refusals.
		return h.Port.HandleForward(ctx, d, nil, h.serviceOperation)
	default:
		// Parse answers an unknown op with INVALID_ARGUMENT before fn is ever
		// called; fn still answers the same should that change.
		return h.Port.Handle(ctx, d, nil, func(_ context.Context, tx *bus.Tx, req *spport.Request) error {
			return spport.ReplyError(tx, req.Ref, "", contract.Errorf(contract.CodeInvalidArgument,
				"unknown operation %q; operations: %v", req.Ref.Op, topology.Operations))
		})
	}
}

// contractError maps a use-case error to the public contract; other errors
// (storage) are returned to be retried.
func contractError(err error) (*contract.Error, error) {
	e, ok := app.AsError(err)
	if !ok {
		return nil, err
	}
	code := contract.CodeInternalError
	switch e.Kind {
	case app.KindInvalid:
		code = contract.CodeInvalidArgument
	case app.KindNotFound:
		code = contract.CodeNotFound
	case app.KindConflict:
		code = contract.CodeAlreadyExists
	case app.KindNotAllowed:
		code = contract.CodeNotAllowed
	case app.KindInaccessible:
		code = contract.CodeSEInaccessible
	case app.KindNoEligibleSE:
		code = contract.CodeNoEligibleSE
	}
	return &contract.Error{Code: code, Message: e.Message}, nil
}

func (h *SPRequests) logRefusal(req *spport.Request, seID string, cerr *contract.Error) {
	level := slog.LevelInfo
	if cerr.Code == contract.CodeInternalError {
		level = slog.LevelError
	}
	// The message names ids and MSI types only, never an MSI.
	h.Log.Log(context.Background(), level, "SP request refused", "sp", req.Ref.SPID, "op", req.Ref.Op,
		"requestId", req.Ref.RequestID, "se", seID, "code", cerr.Code, "message", cerr.Message)
}

func decodeError(op string, err error) *contract.Error {
	return contract.Errorf(contract.CodeInvalidArgument, "the %s request body does not decode: %v", op, err)
}

func (h *SPRequests) getSEID(_ context.Context, tx *bus.Tx, req *spport.Request) error {
	var in contract.GetSEIDRequest
	if err := req.Decode(&in); err != nil {
		return spport.ReplyError(tx, req.Ref, "", decodeError(req.Ref.Op, err))
	}
	seID, err := h.Registry.LookupSEID(h.Repo.InTx(tx), in.MSIType, in.MSI)
	if err != nil {
		cerr, serr := contractError(err)
		if serr != nil {
			return serr
		}
		h.logRefusal(req, "", cerr)
		// Echoing the SP's own msi back to it is fine; logging it is not.
		return spport.Reply(tx, req.Ref, "", contract.GetSEIDResponse{Result: contract.Failure(cerr), MSI: in.MSI})
	}
	return spport.Reply(tx, req.Ref, seID, contract.GetSEIDResponse{Result: contract.Success(), MSI: in.MSI,
		SEID: seID, SEIDType: contract.SEIDTypeCIN})
}

// getSEDataRequest is get-se-data with the optional msiType that get-se-id
// has (MSISDN when absent).
type getSEDataRequest struct {
	contract.GetSEDataRequest
	MSIType string `json:"msiType,omitempty"`
}

// subjectOf is the ce-subject of an answer about seID: the SE id when it is
// well formed, else nothing.
func subjectOf(seID string) string {
	id, _ := domain.NormalizeSEID(seID)
	return id
}

func (h *SPRequests) getSEData(_ context.Context, tx *bus.Tx, req *spport.Request) error {
	var in getSEDataRequest
	if err := req.Decode(&in); err != nil {
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), decodeError(req.Ref.Op, err))
	}
	v, err := h.Registry.SEDataFor(h.Repo.InTx(tx), req.Ref.SPID, app.SEQuery{SEID: in.SEID, MSI: in.MSI, MSIType: in.MSIType})
	if err != nil {
		cerr, serr := contractError(err)
		if serr != nil {
			return serr
		}
		h.logRefusal(req, subjectOf(in.SEID), cerr)
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), cerr)
	}
	se := v.SE
	data := &contract.SEData{MNO: se.MNO, SEType: se.SEType, Configuration: se.Configuration, ProfileID: se.ProfileID,
		GPVersion: se.GPVersion, JavaCardVersion: se.JavaCardVersion, CertificationLevel: se.CertificationLevel,
		ExpiresAt: se.ExpiresAt, Services: []contract.ServiceInstance{}}
	if sd := v.SecurityDomain; sd != nil {
		data.SecurityDomain = &contract.SecurityDomain{AID: sd.AID, LifeCycle: sd.LifeCycle, KeyVersion: sd.KeyVersion,
			MasterKeyIndex: sd.MasterKeyIndex}
	}
	for _, in := range v.Services {
		data.Services = append(data.Services, contract.ServiceInstance{
			ServiceID: contract.ServiceID{Number: in.ServiceNumber, Version: in.ServiceVersion}, InstanceAID: in.InstanceAID,
			State: in.State})
	}
	return spport.Reply(tx, req.Ref, se.ID, contract.GetSEDataResponse{Result: contract.Success(), SEID: se.ID,
		SEIDType: contract.SEIDTypeCIN, MSI: se.MSI, SEData: data})
}

func (h *SPRequests) beginConversation(_ context.Context, tx *bus.Tx, req *spport.Request) error {
	var in contract.BeginConversationRequest
	if err := req.Decode(&in); err != nil {
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), decodeError(req.Ref.Op, err))
	}
	se, mno, err := h.Registry.ResolveConversation(h.Repo.InTx(tx), req.Ref.SPID, in.SEID, in.MSI)
	if err != nil {
		cerr, serr := contractError(err)
		if serr != nil {
			return serr
		}
		h.logRefusal(req, subjectOf(in.SEID), cerr)
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), cerr)
	}
	// Downstream services key everything on the stored (uppercase) SE id.
	in.SEID = se.ID
	begin := events.ConversationBegin{Request: req.Ref, Params: in, SE: adapters.SERecord(se),
		MNO: adapters.MNORecord(mno), ReceivedAt: req.ReceivedAt, ValidUntil: req.ValidUntil}
	ev, err := bus.NewEvent(bus.NewID(), adapters.Source, events.TypeConvBegin, se.ID, begin)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encode conversation begin for SE %s: %w", se.ID, err))
	}
	ev.SetExtension(bus.ExtCorrelationID, req.Ref.RequestID)
	return tx.Emit(topology.ConversationBegin(se.ID), ev)
}

// serviceOperation checks pre-personalize, activate-service,
// suspend-service, resume-service, terminate-service and get-service-state
// and passes them on as a ProcedureRequested (tsm.conv.<seId>.procedure),
// or answers the refusal.
func (h *SPRequests) serviceOperation(_ context.Context, tx *bus.Tx, req *spport.Request) error {
	var in contract.ServiceRequest
	if err := req.Decode(&in); err != nil {
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), decodeError(req.Ref.Op, err))
	}
	op := app.ServiceOperation{SPID: req.Ref.SPID, RequestID: req.Ref.RequestID, Op: req.Ref.Op, SEID: in.SEID,
		MSI: in.MSI, ServiceNumber: in.ServiceID.Number, ServiceVersion: in.ServiceID.Version,
		ReceivedAt: req.ReceivedAt, ValidUntil: req.ValidUntil}
	if q := in.ServiceQualifier; q != nil {
		op.Qualifier = &domain.ServiceQualifier{SPName: q.SPName, PRN: q.PRN}
	}
	if err := h.Registry.RequestServiceOperation(h.Repo.InTx(tx), op); err != nil {
		cerr, serr := contractError(err)
		if serr != nil {
			return serr
		}
		h.logRefusal(req, subjectOf(in.SEID), cerr)
		return spport.ReplyError(tx, req.Ref, subjectOf(in.SEID), cerr)
	}
	return nil
}
