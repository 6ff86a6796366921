package ports

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/app"
)

// HTTP is the se-simulator's HTTP API (ops and test harnesses). Errors are
// RFC 9457 problem+json documents.
type HTTP struct {
	// App runs the use cases.
	App *app.App
	// DebugAPDU enables POST /v1/cards/{seId}/apdu.
	DebugAPDU bool
	// Log receives server-side failures.
	Log *slog.Logger
}

// Mount adds the routes:
//
//	GET  /v1/cards?count=true           number of cards
//	GET  /v1/cards?after=&limit=        SE ids with a card, in order
//	GET  /v1/cards/{seId}               the card: CIN, configuration, life cycle, registry (no keys)
//	GET  /v1/cards/{seId}/counters      apdusExecuted, scriptsExecuted, lastScriptId
//	POST /v1/cards/{seId}/apdu          {"apdu": "hex"} -> {"response": "hex"} (SESIM_DEBUG_APDU=true only)
func (h HTTP) Mount(r chi.Router) {
	r.Get("/v1/cards", h.listCards)
	r.Get("/v1/cards/{seId}", h.getCard)
	r.Get("/v1/cards/{seId}/counters", h.getCounters)
	r.Post("/v1/cards/{seId}/apdu", h.postAPDU)
}

// CardJSON is the body of GET /v1/cards/{seId}.
type CardJSON struct {
	SEID                  string      `json:"seId"`
	CIN                   string      `json:"cin"`
	Configuration         string      `json:"configuration"`
	LifeCycle             string      `json:"lifeCycle"`
	LifeCycleState        string      `json:"lifeCycleState"`
	ExecutionCount        uint64      `json:"executionCount"`
	SessionConversationID string      `json:"sessionConversationId,omitempty"`
	Registry              []EntryJSON `json:"registry"`
}

// EntryJSON is one registry entry of a card: what GET STATUS would tell,
// with key versions but never key values.
type EntryJSON struct {
	AID            string   `json:"aid"`
	Kind           string   `json:"kind"`
	LifeCycle      string   `json:"lifeCycle"`
	LifeCycleState string   `json:"lifeCycleState"`
	Privileges     string   `json:"privileges,omitempty"`
	AssociatedSD   string   `json:"associatedSd,omitempty"`
	ELF            string   `json:"elf,omitempty"`
	Module         string   `json:"module,omitempty"`
	Modules        []string `json:"modules,omitempty"`
	KeyVersions    []string `json:"keyVersions,omitempty"`
}

// CountersJSON is the body of GET /v1/cards/{seId}/counters.
type CountersJSON struct {
	SEID            string `json:"seId"`
	APDUsExecuted   uint64 `json:"apdusExecuted"`
	ScriptsExecuted uint64 `json:"scriptsExecuted"`
	LastScriptID    string `json:"lastScriptId,omitempty"`
}

// APDURequest is the body of POST /v1/cards/{seId}/apdu.
type APDURequest struct {
	APDU string `json:"apdu"`
}

// APDUResponse is the answer of POST /v1/cards/{seId}/apdu.
type APDUResponse struct {
	Response string `json:"response"`
}

// CardCountJSON is the body of GET /v1/cards?count=true.
type CardCountJSON struct {
	Count int `json:"count"`
}

// CardListJSON is the body of GET /v1/cards.
type CardListJSON struct {
	SEIDs []string `json:"seIds"`
	// Next is the after= value of the next page; empty on the last page.
	Next string `json:"next,omitempty"`
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func (h HTTP) seID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := strings.ToUpper(chi.URLParam(r, "seId"))
	if !topology.ValidSEID(id) {
		problem(w, http.StatusBadRequest, "Invalid SE id",
			"the SE id in the path must be the card's CIN in hex (2-32 hex digits)")
		return "", false
	}
	return id, true
}

func (h HTTP) fail(w http.ResponseWriter, seID string, err error) {
	switch {
	case errors.Is(err, app.ErrNotFound):
		problem(w, http.StatusNotFound, "No such card",
			fmt.Sprintf("SE %s has no card: enrol it at the registry (PUT /v1/ses/%s) first", seID, seID))
	case errors.Is(err, app.ErrInvalid):
		problem(w, http.StatusBadRequest, "Invalid request", err.Error())
	default:
		h.Log.Error("http: request failed", "seId", seID, "error", err)
		problem(w, http.StatusInternalServerError, "Internal error", "the card could not be read or stored; see the service log")
	}
}

func (h HTTP) getCard(w http.ResponseWriter, r *http.Request) {
	seID, ok := h.seID(w, r)
	if !ok {
		return
	}
	v, err := h.App.Card(r.Context(), seID)
	if err != nil {
		h.fail(w, seID, err)
		return
	}
	out := CardJSON{SEID: v.SEID, CIN: upperHex(v.CIN), Configuration: string(v.Configuration),
		LifeCycle: fmt.Sprintf("%02X", v.LifeCycle), LifeCycleState: CardLifeCycleName(v.LifeCycle),
		ExecutionCount: v.ExecutionCount, SessionConversationID: v.SessionConversationID,
		Registry: make([]EntryJSON, 0, len(v.Registry))}
	for _, e := range v.Registry {
		j := EntryJSON{AID: upperHex(e.AID), Kind: e.Kind.String(), LifeCycle: fmt.Sprintf("%02X", e.LifeCycle),
			LifeCycleState: EntryLifeCycleName(e.Kind, e.LifeCycle), AssociatedSD: upperHex(e.SD),
			ELF: upperHex(e.ELF), Module: upperHex(e.Module)}
		if e.Kind != card.KindELF {
			j.Privileges = e.Privileges.String()
		}
		for _, m := range e.Modules {
			j.Modules = append(j.Modules, upperHex(m))
		}
		for _, kvn := range e.KeyVersions {
			j.KeyVersions = append(j.KeyVersions, fmt.Sprintf("%02X", kvn))
		}
		out.Registry = append(out.Registry, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h HTTP) getCounters(w http.ResponseWriter, r *http.Request) {
	seID, ok := h.seID(w, r)
	if !ok {
		return
	}
	c, err := h.App.Counters(r.Context(), seID)
	if err != nil {
		h.fail(w, seID, err)
		return
	}
	writeJSON(w, http.StatusOK, CountersJSON{SEID: seID, APDUsExecuted: c.APDUsExecuted,
		ScriptsExecuted: c.ScriptsExecuted, LastScriptID: c.LastScriptID})
}

// maxAPDUBody bounds the debug request: an extended APDU in hex plus JSON.
const maxAPDUBody = 2*65544 + 1024

func (h HTTP) postAPDU(w http.ResponseWriter, r *http.Request) {
	if !h.DebugAPDU {
		problem(w, http.StatusForbidden, "Manual APDUs disabled",
			"manual APDUs bypass conversations and can break an SP's secure channel; start the se-simulator with SESIM_DEBUG_APDU=true to enable them")
		return
	}
	seID, ok := h.seID(w, r)
	if !ok {
		return
	}
	var req APDURequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPDUBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem(w, http.StatusBadRequest, "Invalid body", `the body must be {"apdu": "<hex C-APDU>"}`)
		return
	}
	capdu, err := apdu.DecodeHex(req.APDU)
	if err != nil || len(capdu) == 0 {
		problem(w, http.StatusBadRequest, "Invalid APDU", "apdu must be a non-empty hex string (spaces and colons are ignored)")
		return
	}
	resp, err := h.App.TransmitAPDU(r.Context(), seID, capdu)
	if err != nil {
		h.fail(w, seID, err)
		return
	}
	writeJSON(w, http.StatusOK, APDUResponse{Response: upperHex(resp)})
}

func (h HTTP) listCards(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if c := q.Get("count"); c != "" {
		want, err := strconv.ParseBool(c)
		if err != nil {
			problem(w, http.StatusBadRequest, "Invalid count", "count must be true or false")
			return
		}
		if want {
			n, err := h.App.CardCount(r.Context())
			if err != nil {
				h.fail(w, "", err)
				return
			}
			writeJSON(w, http.StatusOK, CardCountJSON{Count: n})
			return
		}
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			problem(w, http.StatusBadRequest, "Invalid limit", "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	ids, err := h.App.CardIDs(r.Context(), strings.ToUpper(q.Get("after")), limit)
	if err != nil {
		h.fail(w, "", err)
		return
	}
	out := CardListJSON{SEIDs: ids}
	if len(ids) == limit {
		out.Next = ids[len(ids)-1]
	}
	writeJSON(w, http.StatusOK, out)
}

// CardLifeCycleName names a card life-cycle state (GPC Table 11-6).
func CardLifeCycleName(lc byte) string {
	switch lc {
	case card.CardOPReady:
		return "OP_READY"
	case card.CardInitialized:
		return "INITIALIZED"
	case card.CardSecured:
		return "SECURED"
	case card.CardLocked:
		return "CARD_LOCKED"
	case card.CardTerminated:
		return "TERMINATED"
	}
	return "UNKNOWN"
}

// EntryLifeCycleName names the life-cycle state of a registry entry (GPC
// Tables 11-3 to 11-5); application-specific states show as SELECTABLE.
func EntryLifeCycleName(kind card.Kind, lc byte) string {
	switch kind {
	case card.KindISD:
		return CardLifeCycleName(lc)
	case card.KindELF:
		if lc == card.LCLoaded {
			return "LOADED"
		}
		return "UNKNOWN"
	}
	if lc&card.LCLocked != 0 {
		return "LOCKED"
	}
	switch {
	case kind == card.KindSD && lc == card.LCPersonalized:
		return "PERSONALIZED"
	case lc == card.LCInstalled:
		return "INSTALLED"
	case lc&card.LCSelectable == card.LCSelectable:
		return "SELECTABLE"
	}
	return "UNKNOWN"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// problemJSON is an RFC 9457 problem details document.
type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problemJSON{Type: "about:blank", Title: title, Status: status, Detail: detail})
}
