package ports

import (
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/services/mnoadapter/app"
)

// HTTP serves the adapter's read API.
type HTTP struct {
	App *app.App
}

// Routes mounts GET /v1/mno.
func (h *HTTP) Routes(r chi.Router) {
	r.Get("/v1/mno", h.getMNO)
}

// getMNO answers the adapter's MNO id and the settings in force, with where
// each comes from (environment, registry or default).
func (h *HTTP) getMNO(w http.ResponseWriter, _ *http.Request) {
	s, err := h.App.Settings()
	if err != nil {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": "cannot read the MNO settings",
			"status": http.StatusInternalServerError, "detail": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}
