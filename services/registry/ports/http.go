package ports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/pkg/events"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// HTTP is the registry's admin API (DESIGN.md section 5).
type HTTP struct {
	Registry *app.Registry
	Log      *slog.Logger
	// Import tunes POST /v1/ses:import.
	Import app.ImportConfig
}

// maxBodyBytes bounds the body of every call except the import.
const maxBodyBytes = 1 << 20

// maxImportLineBytes bounds one line of an import.
const maxImportLineBytes = 64 << 10

// Routes mounts the API on r.
//
//	PUT  /v1/mnos/{mnoId}                 GET /v1/mnos/{mnoId}
//	PUT  /v1/sps/{spId}                   GET /v1/sps/{spId}
//	PUT  /v1/services/{number}/{version}  GET /v1/services/{number}/{version}
//	PUT  /v1/ses/{seId}                   GET /v1/ses/{seId}    GET /v1/ses?msi=&msiType=
//	POST /v1/ses/{seId}/status            POST /v1/ses/{seId}/subscription
//	POST /v1/ses/{seId}/audit
//	POST /v1/ses:import                   (JSON lines)
func (h *HTTP) Routes(r chi.Router) {
	r.Route("/v1", func(r chi.Router) {
		r.Put("/mnos/{mnoId}", h.putMNO)
		r.Get("/mnos/{mnoId}", h.getMNO)
		r.Put("/sps/{spId}", h.putSP)
		r.Get("/sps/{spId}", h.getSP)
		r.Put("/services/{number}/{version}", h.putService)
		r.Get("/services/{number}/{version}", h.getService)
		// "ses:import" is one static path segment: it cannot be taken for
		// /v1/ses/{seId}, which has a slash after "ses".
		r.Post("/ses:import", h.importSEs)
		r.Get("/ses", h.findSE)
		r.Put("/ses/{seId}", h.putSE)
		r.Get("/ses/{seId}", h.getSE)
		r.Post("/ses/{seId}/status", h.reportStatus)
		r.Post("/ses/{seId}/subscription", h.changeSubscription)
		r.Post("/ses/{seId}/audit", h.requestAudit)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func putStatus(o app.Outcome) int {
	if o == app.Created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// decodeBody reads one JSON object into v, rejecting unknown fields, wrong
// types and trailing data with a problem that names the field.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	} else if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object: send exactly one JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, ProblemMalformedBody,
			fmt.Sprintf("the body is larger than %d bytes", maxBodyBytes), nil)
		return false
	}
	detail, fields := describeJSONError(err)
	writeProblem(w, r, http.StatusBadRequest, ProblemMalformedBody, detail, fields)
	return false
}

// describeJSONError turns a decoding error into words and a field, without
// quoting any value the client sent.
func describeJSONError(err error) (string, []domain.FieldError) {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty: send a JSON object", nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is not valid JSON: it ends in the middle of a value", nil
	case errors.As(err, &syn):
		return fmt.Sprintf("the body is not valid JSON (syntax error at byte %d)", syn.Offset), nil
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return "the body must be a JSON object", nil
		}
		want := jsonKind(typ.Type)
		return fmt.Sprintf("%s: must be %s, not a JSON %s", field, want, typ.Value),
			[]domain.FieldError{{Field: field, Detail: "must be " + want}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fmt.Sprintf("unknown field %q: check its spelling against the API description", name),
			[]domain.FieldError{{Field: name, Detail: "is not a field of this resource"}}
	}
	return "the body cannot be read: " + err.Error(), nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}

// mnoBody is the body of PUT /v1/mnos/{mnoId}.
type mnoBody struct {
	Name              string `json:"name"`
	OTACarrier        string `json:"otaCarrier"`
	MaxAPDUsPerScript *int   `json:"maxApdusPerScript"`
	LatencyMs         *int   `json:"latencyMs"`
}

func (h *HTTP) putMNO(w http.ResponseWriter, r *http.Request) {
	var b mnoBody
	if !decodeBody(w, r, &b) {
		return
	}
	m, outcome, err := h.Registry.PutMNO(chi.URLParam(r, "mnoId"), domain.MNOInput{Name: b.Name, OTACarrier: b.OTACarrier,
		MaxAPDUsPerScript: b.MaxAPDUsPerScript, LatencyMs: b.LatencyMs})
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	if outcome != app.Unchanged {
		h.Log.Info("MNO saved", "mno", m.ID, "created", outcome == app.Created)
	}
	writeJSON(w, putStatus(outcome), adapters.MNORecord(m))
}

func (h *HTTP) getMNO(w http.ResponseWriter, r *http.Request) {
	m, err := h.Registry.GetMNO(chi.URLParam(r, "mnoId"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, adapters.MNORecord(m))
}

// spBody is the body of PUT /v1/sps/{spId}.
type spBody struct {
	Name              string `json:"name"`
	KeyTransportKey   string `json:"keyTransportKey"`
	SecurityDomainAID string `json:"securityDomainAid"`
}

func (h *HTTP) putSP(w http.ResponseWriter, r *http.Request) {
	var b spBody
	if !decodeBody(w, r, &b) {
		return
	}
	sp, outcome, err := h.Registry.PutSP(chi.URLParam(r, "spId"), domain.SPInput{Name: b.Name,
		KeyTransportKey: b.KeyTransportKey, SecurityDomainAID: b.SecurityDomainAID})
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	if outcome != app.Unchanged {
		h.Log.Info("SP saved", "sp", sp.ID, "created", outcome == app.Created)
	}
	// The response is the published record: it has no key field at all.
	writeJSON(w, putStatus(outcome), adapters.SPRecord(sp))
}

func (h *HTTP) getSP(w http.ResponseWriter, r *http.Request) {
	sp, err := h.Registry.GetSP(chi.URLParam(r, "spId"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, adapters.SPRecord(sp))
}

// serviceBody is the body of PUT /v1/services/{number}/{version}.
type serviceBody struct {
	SPID          string `json:"spId"`
	ELFAID        string `json:"elfAid"`
	ModuleAID     string `json:"moduleAid"`
	InstanceAID   string `json:"instanceAid"`
	InstallParams string `json:"installParams"`
	// Eligibility for pre-personalize; empty or absent: any SE.
	SETypes             []string `json:"seTypes"`
	Configurations      []string `json:"configurations"`
	MinGPVersion        string   `json:"minGpVersion"`
	CertificationLevels []string `json:"certificationLevels"`
}

func (h *HTTP) putService(w http.ResponseWriter, r *http.Request) {
	var b serviceBody
	if !decodeBody(w, r, &b) {
		return
	}
	s, outcome, err := h.Registry.PutService(chi.URLParam(r, "number"), chi.URLParam(r, "version"), domain.ServiceInput{
		SPID: b.SPID, ELFAID: b.ELFAID, ModuleAID: b.ModuleAID, InstanceAID: b.InstanceAID, InstallParams: b.InstallParams,
		Eligibility: domain.Eligibility{SETypes: b.SETypes, Configurations: b.Configurations, MinGPVersion: b.MinGPVersion,
			CertificationLevels: b.CertificationLevels}})
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	if outcome != app.Unchanged {
		h.Log.Info("service saved", "service", s.Key(), "created", outcome == app.Created)
	}
	writeJSON(w, putStatus(outcome), adapters.ServiceRecord(s))
}

func (h *HTTP) getService(w http.ResponseWriter, r *http.Request) {
	s, err := h.Registry.GetService(chi.URLParam(r, "number"), chi.URLParam(r, "version"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, adapters.ServiceRecord(s))
}

// seBody is the body of PUT /v1/ses/{seId}.
type seBody struct {
	MSI                string       `json:"msi"`
	MSIType            string       `json:"msiType"`
	MNO                string       `json:"mno"`
	SEType             string       `json:"seType"`
	Configuration      string       `json:"configuration"`
	ProfileID          string       `json:"profileId"`
	GPVersion          string       `json:"gpVersion"`
	JavaCardVersion    string       `json:"javaCardVersion"`
	CertificationLevel string       `json:"certificationLevel"`
	ExpiresAt          string       `json:"expiresAt"`
	PreIssuedSPDomains []sdBodyItem `json:"preIssuedSpDomains"`
}

type sdBodyItem struct {
	SPID string `json:"spId"`
	AID  string `json:"aid"`
}

func (b seBody) input() domain.SEInput {
	in := domain.SEInput{MSI: b.MSI, MSIType: b.MSIType, MNO: b.MNO, SEType: b.SEType, Configuration: b.Configuration,
		ProfileID: b.ProfileID, GPVersion: b.GPVersion, JavaCardVersion: b.JavaCardVersion,
		CertificationLevel: b.CertificationLevel, ExpiresAt: b.ExpiresAt}
	for _, sd := range b.PreIssuedSPDomains {
		in.PreIssuedSPDomains = append(in.PreIssuedSPDomains, domain.PreIssuedSD{SPID: sd.SPID, AID: sd.AID})
	}
	return in
}

// importLineBody is one line of POST /v1/ses:import.
type importLineBody struct {
	SEID string `json:"seId"`
	seBody
}

func (h *HTTP) putSE(w http.ResponseWriter, r *http.Request) {
	var b seBody
	if !decodeBody(w, r, &b) {
		return
	}
	se, outcome, err := h.Registry.PutSE(chi.URLParam(r, "seId"), b.input())
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	if outcome != app.Unchanged {
		h.Log.Info("SE saved", "se", se.ID, "created", outcome == app.Created)
	}
	writeJSON(w, putStatus(outcome), adapters.SERecord(se))
}

func (h *HTTP) getSE(w http.ResponseWriter, r *http.Request) {
	v, err := h.Registry.GetSEContent(chi.URLParam(r, "seId"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, seWithContent(v))
}

// seContentBody is an SE as GET /v1/ses answers it: the published record
// plus the content model (each SP's SD and service instances, as the
// conversation service last reported them) and the last audit of the card.
type seContentBody struct {
	events.SERecord
	Content []spContentBody   `json:"content"`
	Audit   *events.CardAudit `json:"audit"`
}

// spContentBody is one SP's content on the SE.
type spContentBody struct {
	SPID           string                   `json:"spId"`
	SecurityDomain *events.SDContent        `json:"securityDomain"`
	Services       []events.InstanceContent `json:"services"`
	ChangedAt      *time.Time               `json:"changedAt,omitempty"`
	// Deploying is true while a pre-personalize passed to the conversation
	// service has not been followed by a content snapshot.
	Deploying bool `json:"deploying"`
}

func seWithContent(v app.SEContentView) seContentBody {
	out := seContentBody{SERecord: adapters.SERecord(v.SE), Content: []spContentBody{}}
	for _, c := range v.Content {
		b := spContentBody{SPID: c.SPID, SecurityDomain: adapters.SDContent(c.SD),
			Services: adapters.InstanceContents(c.Instances), Deploying: !c.PendingSince.IsZero()}
		if !c.ChangedAt.IsZero() {
			at := c.ChangedAt
			b.ChangedAt = &at
		}
		out.Content = append(out.Content, b)
	}
	if v.Audit != nil {
		a := adapters.CardAudit(*v.Audit)
		out.Audit = &a
	}
	return out
}

// findSE is GET /v1/ses?msi=...&msiType=...: the SE holding the MSI (MSIs
// are unique per type, so it is one SE or 404).
func (h *HTTP) findSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("msi") == "" {
		writeProblem(w, r, http.StatusBadRequest, ProblemInvalidFields,
			"the msi query parameter is required: GET /v1/ses?msi=<msi>&msiType=MSISDN|MDN",
			[]domain.FieldError{{Field: "msi", Detail: "is required"}})
		return
	}
	v, err := h.Registry.FindSEContentByMSI(q.Get("msiType"), q.Get("msi"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, seWithContent(v))
}

// statusBody is the body of POST /v1/ses/{seId}/status.
type statusBody struct {
	Status string `json:"status"`
}

func (h *HTTP) reportStatus(w http.ResponseWriter, r *http.Request) {
	var b statusBody
	if !decodeBody(w, r, &b) {
		return
	}
	rep, err := h.Registry.ReportSEStatus(chi.URLParam(r, "seId"), b.Status)
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	if rep.OperationID == "" {
		// Reported again: nothing changed, no procedure.
		writeJSON(w, http.StatusOK, operationBody{Status: string(rep.SE.Status)})
		return
	}
	h.Log.Info("SE status reported", "se", rep.SE.ID, "status", rep.SE.Status, "operationId", rep.OperationID)
	writeJSON(w, http.StatusAccepted, operationBody{OperationID: rep.OperationID, Status: string(rep.SE.Status)})
}

// operationBody answers the calls that start an operator procedure (202);
// operationId is the procedure's request id (an audit's procedureId).
type operationBody struct {
	OperationID string `json:"operationId,omitempty"`
	Status      string `json:"status,omitempty"`
}

// requestAudit is POST /v1/ses/{seId}/audit: the body is empty or {}.
func (h *HTTP) requestAudit(w http.ResponseWriter, r *http.Request) {
	var opID string
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, ProblemMalformedBody, "the body cannot be read: send {} or nothing", nil)
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(raw))
		var b struct{}
		if !decodeBody(w, r, &b) {
			return
		}
	}
	opID, err = h.Registry.RequestAudit(chi.URLParam(r, "seId"))
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	h.Log.Info("SE audit requested", "se", chi.URLParam(r, "seId"), "operationId", opID)
	writeJSON(w, http.StatusAccepted, operationBody{OperationID: opID})
}

// subscriptionBody is the body of POST /v1/ses/{seId}/subscription.
type subscriptionBody struct {
	MSI     string `json:"msi"`
	MSIType string `json:"msiType"`
	MNO     string `json:"mno"`
}

func (h *HTTP) changeSubscription(w http.ResponseWriter, r *http.Request) {
	var b subscriptionBody
	if !decodeBody(w, r, &b) {
		return
	}
	se, err := h.Registry.ChangeSubscription(chi.URLParam(r, "seId"), app.SubscriptionInput{MSI: b.MSI, MSIType: b.MSIType, MNO: b.MNO})
	if err != nil {
		writeError(w, r, h.Log, err)
		return
	}
	h.Log.Info("SE subscription changed", "se", se.ID, "mno", se.MNO)
	writeJSON(w, http.StatusOK, adapters.SERecord(se))
}

func (h *HTTP) importSEs(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rep, err := h.Registry.ImportSEs(r.Context(), ImportLines(r.Body), h.Import)
	if err != nil {
		h.Log.Error("SE import stopped", "error", err, "imported", rep.Imported, "updated", rep.Updated, "failed", rep.Failed)
		writeProblemDoc(w, Problem{Type: ProblemInternal, Title: problemTitles[ProblemInternal],
			Status: http.StatusInternalServerError, Instance: r.URL.Path, Report: &rep,
			Detail: "the import stopped: the lines counted in report were committed; re-send the whole file (unchanged SEs are skipped)"})
		return
	}
	h.Log.Info("SE import done", "imported", rep.Imported, "updated", rep.Updated, "unchanged", rep.Unchanged,
		"failed", rep.Failed, "duration", time.Since(start).String())
	writeJSON(w, http.StatusOK, rep)
}

// ImportLines decodes a JSON-lines body, one SE per line (the fields of PUT
// /v1/ses/{seId} plus seId). Blank lines are skipped but counted, so line
// numbers match the file. A line that cannot be decoded is yielded with Err.
func ImportLines(body io.Reader) iter.Seq[app.ImportLine] {
	return func(yield func(app.ImportLine) bool) {
		br := bufio.NewReaderSize(body, maxImportLineBytes)
		for n := 1; ; n++ {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				// Skip the rest of the over-long line.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if !yield(app.ImportLine{Line: n, Err: fmt.Errorf("the line is longer than %d bytes", maxImportLineBytes)}) {
					return
				}
				if err != nil {
					return
				}
				continue
			}
			if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
				if !yield(decodeImportLine(n, trimmed)) {
					return
				}
			}
			if err != nil {
				// io.EOF ends the body; a read error (client gone) ends it too,
				// and the lines read so far are imported.
				return
			}
		}
	}
}

func decodeImportLine(n int, line []byte) app.ImportLine {
	var b importLineBody
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	err := dec.Decode(&b)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		detail, _ := describeJSONError(err)
		return app.ImportLine{Line: n, Err: errors.New(strings.Replace(detail, "the body", "the line", 1))}
	}
	return app.ImportLine{Line: n, SEID: b.SEID, Input: b.input()}
}
