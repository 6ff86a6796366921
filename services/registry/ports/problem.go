// Package ports translates between the registry's use cases and the outside:
// the admin HTTP API (chi, JSON, RFC 9457 problem details) and the SP
// requests that arrive on the bus.
package ports

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// Problem is an RFC 9457 problem details document.
type Problem struct {
	// Type identifies the kind of problem (a URN: nothing to dereference).
	Type string `json:"type"`
	// Title is the short, fixed summary of the type.
	Title string `json:"title"`
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Detail says what went wrong with this request and what to fix.
	Detail string `json:"detail"`
	// Instance is the request path.
	Instance string `json:"instance,omitempty"`
	// Errors lists per-field problems (extension member).
	Errors []domain.FieldError `json:"errors"`
	// Report is the partial result of an import that stopped (extension member).
	Report *app.ImportReport `json:"report,omitempty"`
}

// ContentTypeProblem is the media type of problem documents.
const ContentTypeProblem = "application/problem+json"

// Problem types.
const (
	ProblemMalformedBody = "urn:tsm:problem:malformed-body"
	ProblemInvalidFields = "urn:tsm:problem:invalid-fields"
	ProblemNotFound      = "urn:tsm:problem:not-found"
	ProblemConflict      = "urn:tsm:problem:conflict"
	ProblemNotAllowed    = "urn:tsm:problem:not-allowed"
	ProblemInternal      = "urn:tsm:problem:internal"
)

var problemTitles = map[string]string{
	ProblemMalformedBody: "The request body cannot be read",
	ProblemInvalidFields: "Some fields are invalid",
	ProblemNotFound:      "No such resource",
	ProblemConflict:      "The change conflicts with another resource",
	ProblemNotAllowed:    "The operation is not allowed on this resource",
	ProblemInternal:      "Internal error",
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, typ, detail string, fields []domain.FieldError) {
	p := Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail, Instance: r.URL.Path, Errors: fields}
	writeProblemDoc(w, p)
}

func writeProblemDoc(w http.ResponseWriter, p Problem) {
	if p.Errors == nil {
		p.Errors = []domain.FieldError{}
	}
	w.Header().Set("Content-Type", ContentTypeProblem)
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeError maps a use-case error to a problem; any other error is an
// internal one, logged (it names no key or MSI: storage errors only) and
// answered without details.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e, ok := app.AsError(err)
	if !ok {
		log.Error("admin API: internal error", "method", r.Method, "path", r.URL.Path, "error", err)
		writeProblem(w, r, http.StatusInternalServerError, ProblemInternal,
			"the registry could not complete the request; its log has the details, retry later", nil)
		return
	}
	switch e.Kind {
	case app.KindInvalid:
		writeProblem(w, r, http.StatusBadRequest, ProblemInvalidFields, e.Message, e.Fields)
	case app.KindNotFound:
		writeProblem(w, r, http.StatusNotFound, ProblemNotFound, e.Message, e.Fields)
	case app.KindConflict:
		writeProblem(w, r, http.StatusConflict, ProblemConflict, e.Message, e.Fields)
	case app.KindNotAllowed, app.KindInaccessible:
		writeProblem(w, r, http.StatusConflict, ProblemNotAllowed, e.Message, e.Fields)
	default:
		log.Error("admin API: internal error", "method", r.Method, "path", r.URL.Path, "error", e.Message)
		writeProblem(w, r, http.StatusInternalServerError, ProblemInternal, e.Message, e.Fields)
	}
}
