package ports

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
)

// HTTP serves the script router's read API.
type HTTP struct {
	App *app.App
}

// Routes mounts GET /v1/scripts/{scriptId}.
func (h *HTTP) Routes(r chi.Router) {
	r.Get("/v1/scripts/{scriptId}", h.getScript)
}

// getScript answers the state and counts of a script, never its APDUs.
func (h *HTTP) getScript(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "scriptId")
	sum, err := h.App.Summary(id)
	switch {
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
