package ports

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"

	"github.com/tsmhub/tsmhub/services/conversation/adapters"
	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// HTTP serves the operators' read API. It shows state, parties, counts and
// times: never APDU data (which this service does not keep anyway).
type HTTP struct {
	Store *bus.Store
	// StoreFor, when set, replaces Store: it returns the store of the
	// partition of key (a conversation id or an SE id), or an error when
	// another replica owns that partition (answered 404).
	StoreFor func(key string) (*bus.Store, error)
}

// store returns the store that holds key, or answers the request.
func (h *HTTP) store(w http.ResponseWriter, key string) *bus.Store {
	if h.StoreFor == nil {
		return h.Store
	}
	s, err := h.StoreFor(key)
	if err != nil {
		problem(w, http.StatusNotFound, err.Error())
		return nil
	}
	return s
}

// Routes mounts the API on r.
func (h *HTTP) Routes(r chi.Router) {
	r.Get("/v1/conversations/{conversationId}", h.getConversation)
	r.Get("/v1/ses/{seId}/conversation", h.getOpenConversation)
}

// RunningScriptView is the script a conversation waits for.
type RunningScriptView struct {
	ScriptID  string    `json:"scriptId"`
	RequestID string    `json:"requestId"`
	StartedAt time.Time `json:"startedAt"`
}

// ProcedureView is the procedure a record of kind procedure holds.
type ProcedureView struct {
	ProcedureID string `json:"procedureId"`
	Kind        string `json:"kind"`
	Phase       string `json:"phase"`
	// Step is the step whose script is with the script router.
	Step     string `json:"step,omitempty"`
	ScriptID string `json:"scriptId,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
}

// ConversationView is a conversation (or a procedure holding an SE) as
// operators see it.
type ConversationView struct {
	ConversationID     string             `json:"conversationId"`
	Kind               string             `json:"kind,omitempty"`
	Procedure          *ProcedureView     `json:"procedure,omitempty"`
	State              domain.State       `json:"state"`
	SEID               string             `json:"seId"`
	SPID               string             `json:"spId"`
	MNOID              string             `json:"mnoId"`
	TargetAID          string             `json:"targetAid"`
	RequestedOperation string             `json:"requestedOperation"`
	ScriptFormat       string             `json:"scriptFormat"`
	OTACarrier         string             `json:"otaCarrier"`
	Limits             domain.Limits      `json:"limits"`
	ScriptsRun         int                `json:"scriptsRun"`
	RunningScript      *RunningScriptView `json:"runningScript"`
	OpenedAt           time.Time          `json:"openedAt"`
	ExpiresAt          time.Time          `json:"expiresAt"`
	ClosedAt           *time.Time         `json:"closedAt,omitempty"`
	Outcome            string             `json:"outcome,omitempty"`
}

// SEConversationView is the open conversation of an SE and its queue length.
type SEConversationView struct {
	ConversationView
	WaitingBegins int `json:"waitingBegins"`
}

func viewOf(c *domain.Conversation) ConversationView {
	v := ConversationView{
		ConversationID: c.ID, State: c.State, SEID: c.SEID, SPID: c.SPID, MNOID: c.MNOID, TargetAID: c.TargetAID,
		RequestedOperation: c.RequestedOperation, ScriptFormat: c.ScriptFormat, OTACarrier: c.OTACarrier,
		Limits: c.Limits, ScriptsRun: c.ScriptsRun, OpenedAt: c.OpenedAt, ExpiresAt: c.ExpiresAt, Outcome: c.Outcome,
	}
	if p := c.Procedure; p != nil {
		v.Kind = c.Kind
		v.Procedure = &ProcedureView{ProcedureID: p.ID, Kind: p.Kind, Phase: p.Phase}
		if p.Running != nil {
			v.Procedure.Step, v.Procedure.ScriptID, v.Procedure.Attempt = p.Running.Step, p.Running.ScriptID, p.Running.Attempt
		}
	}
	if c.Running != nil {
		v.RunningScript = &RunningScriptView{ScriptID: c.Running.ScriptID, RequestID: c.Running.Request.RequestID,
			StartedAt: c.Running.StartedAt}
	}
	if !c.ClosedAt.IsZero() {
		t := c.ClosedAt
		v.ClosedAt = &t
	}
	return v
}

func (h *HTTP) getConversation(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "conversationId")
	store := h.store(w, id)
	if store == nil {
		return
	}
	var c *domain.Conversation
	err := store.DB().View(func(tx *bolt.Tx) error {
		var err error
		c, err = adapters.NewRepository(tx).Conversation(id)
		return err
	})
	switch {
	case err != nil:
		problem(w, http.StatusInternalServerError, "cannot read the conversation store")
	case c == nil:
		problem(w, http.StatusNotFound, "conversation "+id+" is unknown")
	default:
		writeJSON(w, http.StatusOK, viewOf(c))
	}
}

func (h *HTTP) getOpenConversation(w http.ResponseWriter, r *http.Request) {
	seID := chi.URLParam(r, "seId")
	var (
		c       *domain.Conversation
		waiting int
	)
	store := h.store(w, seID)
	if store == nil {
		return
	}
	err := store.DB().View(func(tx *bolt.Tx) error {
		repo := adapters.NewRepository(tx)
		id, err := repo.OpenConversationOf(seID)
		if err != nil || id == "" {
			return err
		}
		if c, err = repo.Conversation(id); err != nil {
			return err
		}
		waiting, err = repo.CountWaiting(seID)
		return err
	})
	switch {
	case err != nil:
		problem(w, http.StatusInternalServerError, "cannot read the conversation store")
	case c == nil:
		problem(w, http.StatusNotFound, "SE "+seID+" has no open conversation")
	default:
		writeJSON(w, http.StatusOK, SEConversationView{ConversationView: viewOf(c), WaitingBegins: waiting})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}
