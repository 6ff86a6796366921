package ports

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// HTTP serves the script router's read API.
type HTTP struct {
	App *app.App
	// ForSE and Owned, when set (a partitioned router), replace App: ForSE
	// returns the use cases of the partition of seID, or an error when
	// another replica owns it; Owned returns those of every partition this
	// replica owns and whether that is all of them.
	ForSE func(seID string) (*app.App, error)
	Owned func() (apps []*app.App, all bool)
}

// Routes mounts GET /v1/scripts/{scriptId} and GET /v1/custody/{seId}.
func (h *HTTP) Routes(r chi.Router) {
	r.Get("/v1/scripts/{scriptId}", h.getScript)
	r.Get("/v1/custody/{seId}", h.getCustody)
}

// custodyResponse is the key custody of the SP SDs of an SE: states, key
// versions and times, never keys.
type custodyResponse struct {
	SEID            string           `json:"seId"`
	SecurityDomains []domain.Custody `json:"securityDomains"`
}

// getCustody answers who holds the keys of each SP SD the router created or
// saw rotated on an SE (an SE it knows nothing of has an empty list).
func (h *HTTP) getCustody(w http.ResponseWriter, r *http.Request) {
	seID := chi.URLParam(r, "seId")
	if !topology.ValidSEID(seID) {
		problem(w, http.StatusBadRequest, "invalid SE id", "seId must be the CIN in uppercase hex, e.g. 0100000000000005")
		return
	}
	a := h.App
	if h.ForSE != nil {
		var err error
		if a, err = h.ForSE(seID); err != nil {
			problem(w, http.StatusNotFound, "key custody not here", err.Error())
			return
		}
	}
	list, err := a.Custody(seID)
	if err != nil {
		problem(w, http.StatusInternalServerError, "cannot read the key custody", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(custodyResponse{SEID: seID, SecurityDomains: list})
}

// getScript answers the state and counts of a script, never its APDUs.
func (h *HTTP) getScript(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "scriptId")
	apps, all := []*app.App{h.App}, true
	if h.Owned != nil {
		apps, all = h.Owned()
	}
	sum, err := domain.Summary{}, error(app.ErrNotFound)
	for _, a := range apps {
		if sum, err = a.Summary(id); !errors.Is(err, app.ErrNotFound) {
			break
		}
	}
	switch {
	case errors.Is(err, app.ErrNotFound) && !all:
		problem(w, http.StatusNotFound, "script not found",
			"no script "+id+" is in flight or completed recently in the partitions this replica owns: it may be served by another replica")
	case errors.Is(err, app.ErrNotFound):
		problem(w, http.StatusNotFound, "script not found",
			"no script "+id+" is in flight or completed recently (completed scripts are kept for the configured retention)")
	case err != nil:
		problem(w, http.StatusInternalServerError, "cannot read the script", err.Error())
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sum)
	}
}

// problem writes an RFC 9457 problem+json body.
func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}
