package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// defaultRegistryURL is the registry admin API of `make run`.
const defaultRegistryURL = "http://127.0.0.1:8080"

// adminLimit bounds the response body tsmctl reads from the admin API.
const adminLimit = 16 << 20

var adminCommand = &command{
	name:    "admin",
	summary: "operator calls of the registry admin API: SE status (lost/stolen/found), subscription, audit, SE record",
	usage: "se-status --se <seId> lost|stolen|found\n" +
		"       admin subscription --se <seId> --msi <msi> [--msi-type MSISDN|MDN] [--mno <mnoId>]\n" +
		"       admin audit --se <seId>\n" +
		"       admin se --se <seId>\n" +
		"       [--registry http://127.0.0.1:8080]",
	help: `Calls the registry's admin HTTP API (not the bus) and prints its JSON answer:
  se-status     POST /v1/ses/{seId}/status {"status": ...}: lost and stolen lock
                every service instance on the SE (SPs are notified), found
                unlocks them
  subscription  POST /v1/ses/{seId}/subscription {"msi", "msiType", "mno"}: the
                SE is now reached through another subscription (SPs get
                msi-changed)
  audit         POST /v1/ses/{seId}/audit: reads the card's content through the
                central SD (GET STATUS); the result shows in admin se
  se            GET /v1/ses/{seId}: the SE record and its content model
--registry defaults to $TSM_REGISTRY_URL or ` + defaultRegistryURL + `. An error answer
(RFC 9457 problem) is printed on stderr with its title, detail and field
errors; exit status 1.`,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		o := &adminOptions{registry: os.Getenv("TSM_REGISTRY_URL")}
		if o.registry == "" {
			o.registry = defaultRegistryURL
		}
		fs.StringVar(&o.registry, "registry", o.registry, "base URL of the registry admin API ($TSM_REGISTRY_URL)")
		fs.StringVar(&o.se, "se", "", "SE id (CIN in hex) (required)")
		fs.StringVar(&o.msi, "msi", "", "subscription: the new MSI")
		fs.StringVar(&o.msiType, "msi-type", "", "subscription: MSISDN or MDN (registry default: MSISDN)")
		fs.StringVar(&o.mno, "mno", "", "subscription: the MNO of the new subscription (default: unchanged)")
		return func(ctx context.Context, e *env, args []string) int {
			call, err := o.build(args)
			if err != nil {
				e.errorf("admin: %v", err)
				return exitUsage
			}
			return e.adminCall(ctx, call)
		}
	},
}

// adminOptions are the flags of admin.
type adminOptions struct {
	registry, se, msi, msiType, mno string
}

// adminRequest is one checked call of the admin API.
type adminRequest struct {
	what   string
	method string
	url    string
	body   any
}

// SE statuses an operator reports.
var reportableStatuses = []string{contract.SEStatusLost, contract.SEStatusStolen, contract.SEStatusFound}

// build checks the action and flags and returns the HTTP call.
func (o *adminOptions) build(args []string) (*adminRequest, error) {
	if len(args) == 0 {
		return nil, errors.New("give an action: se-status, subscription, audit or se")
	}
	action, rest := args[0], args[1:]
	base, err := url.Parse(strings.TrimRight(o.registry, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--registry %q: give the base URL of the admin API, e.g. %s", o.registry, defaultRegistryURL)
	}
	se := strings.ToUpper(o.se)
	var problems []string
	if !topology.ValidSEID(se) {
		problems = append(problems, "--se: give the SE id, the CIN in hex")
	}
	seURL := base.String() + "/v1/ses/" + url.PathEscape(se)
	req := &adminRequest{what: action}
	onlyFor := func(flagName, value, action string) {
		if value != "" {
			problems = append(problems, fmt.Sprintf("--%s: only with admin %s", flagName, action))
		}
	}
	switch action {
	case "se-status":
		if len(rest) != 1 || !contains(reportableStatuses, rest[0]) {
			problems = append(problems, "se-status needs the status: lost, stolen or found")
		} else {
			req.body = map[string]string{"status": rest[0]}
		}
		req.method, req.url = http.MethodPost, seURL+"/status"
	case "subscription":
		if o.msi == "" {
			problems = append(problems, "--msi: give the MSI of the new subscription")
		}
		body := map[string]string{"msi": o.msi}
		if o.msiType != "" {
			body["msiType"] = o.msiType
		}
		if o.mno != "" {
			body["mno"] = o.mno
		}
		req.method, req.url, req.body = http.MethodPost, seURL+"/subscription", body
	case "audit":
		req.method, req.url, req.body = http.MethodPost, seURL+"/audit", map[string]string{}
	case "se":
		req.method, req.url = http.MethodGet, seURL
	default:
		return nil, fmt.Errorf("unknown action %q: se-status, subscription, audit or se", action)
	}
	if action != "se-status" && len(rest) > 0 {
		problems = append(problems, fmt.Sprintf("admin %s takes no further arguments (got %q)", action, strings.Join(rest, " ")))
	}
	if action != "subscription" {
		onlyFor("msi", o.msi, "subscription")
		onlyFor("msi-type", o.msiType, "subscription")
		onlyFor("mno", o.mno, "subscription")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return req, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// adminCall sends the call and prints the answer: the JSON body on stdout,
// a problem on stderr.
func (e *env) adminCall(ctx context.Context, a *adminRequest) int {
	ctx, cancel := context.WithTimeout(ctx, e.g.timeout)
	defer cancel()
	var body io.Reader
	if a.body != nil {
		b, err := json.Marshal(a.body)
		if err != nil {
			e.errorf("admin %s: %v", a.what, err)
			return exitFailed
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, a.method, a.url, body)
	if err != nil {
		e.errorf("admin %s: %v", a.what, err)
		return exitFailed
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.errorf("admin %s: cannot reach the registry admin API (set --registry or TSM_REGISTRY_URL): %v", a.what, err)
		return exitFailed
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, adminLimit))
	if err != nil {
		e.errorf("admin %s: reading the answer: %v", a.what, err)
		return exitFailed
	}
	if resp.StatusCode >= 300 {
		e.errorf("admin %s: %s %s: %s", a.what, a.method, req.URL.Path, problemText(resp.Status, b))
		return exitFailed
	}
	if len(bytes.TrimSpace(b)) == 0 {
		fmt.Fprintf(e.stdout, "%s\n", resp.Status)
		return exitOK
	}
	if e.g.json {
		e.stdout.Write(append(compactJSON(b), '\n'))
	} else {
		printBody(e, b)
	}
	return exitOK
}

// problemText is the text of an RFC 9457 problem answer (the body as is
// when it is not one).
func problemText(status string, body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Field  string `json:"field"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &p) != nil || (p.Title == "" && p.Detail == "") {
		text := strings.TrimSpace(string(body))
		if len(text) > 500 {
			text = text[:500] + "..."
		}
		if text == "" {
			return status
		}
		return status + ": " + text
	}
	out := status + ": " + p.Title
	if p.Detail != "" {
		out += ": " + p.Detail
	}
	for _, f := range p.Errors {
		out += fmt.Sprintf("\n  %s: %s", f.Field, f.Detail)
	}
	return out
}
