package schemas

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The schemas module has no dependencies, so these tests only check the shape
// of the files; pkg/bus compiles every schema with a JSON Schema validator and
// validates the examples against them.

var ops = []string{
	"get-se-id", "get-se-data", "begin-conversation", "send-script", "end-conversation",
	"pre-personalize", "activate-service", "suspend-service", "resume-service", "terminate-service",
	"get-service-state",
}

var kinds = []string{"service-state-changed", "se-status-changed", "msi-changed", "se-replaced", "conversation-expired"}

// internalTypes mirrors the Type* constants of pkg/events.
var internalTypes = []string{
	"tsmhub.registry.se.v1", "tsmhub.registry.mno.v1", "tsmhub.registry.sp.v1", "tsmhub.registry.service.v1",
	"tsmhub.conversation.begin.v1", "tsmhub.script.requested.v1", "tsmhub.script.completed.v1",
	"tsmhub.mno.deliver.v1", "tsmhub.se.execute.v1", "tsmhub.se.executed.v1",
	"tsmhub.procedure.requested.v1", "tsmhub.content.changed.v1",
}

func expectedTypes() []string {
	var out []string
	for _, op := range ops {
		out = append(out, "tsm."+op+".request", "tsm."+op+".response")
	}
	for _, k := range kinds {
		out = append(out, "tsm."+k+".notification")
	}
	out = append(out, internalTypes...)
	sort.Strings(out)
	return out
}

func readSchema(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := fs.ReadFile(FS(), name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s does not parse: %v", name, err)
	}
	return doc
}

func TestTypesCoverEveryEvent(t *testing.T) {
	got := Types()
	sort.Strings(got)
	if want := expectedTypes(); !slices.Equal(got, want) {
		t.Errorf("schema files:\n got %v\nwant %v", got, want)
	}
}

func TestSchemasShape(t *testing.T) {
	for _, typ := range Types() {
		name := typ + ".json"
		doc := readSchema(t, name)
		if id, _ := doc["$id"].(string); id != BaseURL+name {
			t.Errorf("%s: $id %q, want %q", name, id, BaseURL+name)
		}
		if s, _ := doc["$schema"].(string); s != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %q is not draft 2020-12", name, s)
		}
		if ty, _ := doc["type"].(string); ty != "object" {
			t.Errorf("%s: type %v, want object", name, doc["type"])
		}
		if d, _ := doc["description"].(string); d == "" {
			t.Errorf("%s: no description", name)
		}
		props, _ := doc["properties"].(map[string]any)
		if len(props) == 0 {
			t.Errorf("%s: no properties", name)
		}
		checkDescriptions(t, name, "", props)
		for _, r := range asStrings(doc["required"]) {
			if _, ok := props[r]; !ok {
				t.Errorf("%s: required %q is not a property", name, r)
			}
		}
		ap, hasAP := doc["additionalProperties"].(bool)
		switch {
		case strings.HasSuffix(typ, ".request"):
			if !hasAP || ap {
				t.Errorf("%s: a request must set additionalProperties false", name)
			}
			if _, ok := props["validitySeconds"]; !ok {
				t.Errorf("%s: no validitySeconds", name)
			}
		default:
			if !hasAP || !ap {
				t.Errorf("%s: responses, notifications and internal events set additionalProperties true", name)
			}
		}
		if strings.HasSuffix(typ, ".response") && !slices.Contains(asStrings(doc["required"]), "status") {
			t.Errorf("%s: a response requires status", name)
		}
	}
}

// checkDescriptions makes sure every property says what it is: these
// descriptions are what SP integrators read.
func checkDescriptions(t *testing.T, file, path string, props map[string]any) {
	t.Helper()
	for name, v := range props {
		p, _ := v.(map[string]any)
		if d, _ := p["description"].(string); d == "" {
			t.Errorf("%s: property %s%s has no description", file, path, name)
		}
		if sub, ok := p["properties"].(map[string]any); ok {
			checkDescriptions(t, file, path+name+".", sub)
		}
		if items, ok := p["items"].(map[string]any); ok {
			if sub, ok := items["properties"].(map[string]any); ok {
				checkDescriptions(t, file, path+name+"[].", sub)
			}
		}
		for _, alt := range asMaps(p["anyOf"]) {
			if sub, ok := alt["properties"].(map[string]any); ok {
				checkDescriptions(t, file, path+name+".", sub)
			}
		}
	}
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asMaps(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestExamples checks that there is one example per public request, that it
// parses, and that it only uses fields its schema declares.
func TestExamples(t *testing.T) {
	for _, op := range ops {
		typ := "tsm." + op + ".request"
		b, err := os.ReadFile(filepath.Join("examples", typ+".json"))
		if err != nil {
			t.Errorf("example of %s: %v", typ, err)
			continue
		}
		var ex map[string]any
		if err := json.Unmarshal(b, &ex); err != nil {
			t.Errorf("example of %s does not parse: %v", typ, err)
			continue
		}
		doc := readSchema(t, typ+".json")
		props, _ := doc["properties"].(map[string]any)
		for k := range ex {
			if _, ok := props[k]; !ok {
				t.Errorf("example of %s: field %q is not in the schema", typ, k)
			}
		}
		for _, r := range asStrings(doc["required"]) {
			if _, ok := ex[r]; !ok {
				t.Errorf("example of %s: required field %q missing", typ, r)
			}
		}
	}
}

// TestAsyncAPIReferences checks, without a YAML parser, that the AsyncAPI
// document references every schema file and only existing ones, and names
// every stream.
func TestAsyncAPIReferences(t *testing.T) {
	doc := string(AsyncAPI())
	if !strings.HasPrefix(strings.TrimSpace(stripComments(doc)), "asyncapi: 3.0.0") {
		t.Fatalf("asyncapi.yaml does not start with asyncapi: 3.0.0")
	}
	refs := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$ref: '?\./([^'\s]+)\.json'?`).FindAllStringSubmatch(doc, -1) {
		refs[m[1]] = true
	}
	for _, typ := range Types() {
		if !refs[typ] {
			t.Errorf("asyncapi.yaml does not reference %s.json", typ)
		}
		delete(refs, typ)
	}
	for r := range refs {
		t.Errorf("asyncapi.yaml references %s.json, which does not exist", r)
	}
	for _, stream := range []string{"TSM_REQ", "TSM_RES", "TSM_REG", "TSM_STEPS", "TSM_DLQ"} {
		if !strings.Contains(doc, "stream: "+stream+"\n") {
			t.Errorf("asyncapi.yaml has no channel in stream %s", stream)
		}
	}
	for _, h := range []string{"Tsm-Dlq-Reason", "Tsm-Dlq-Subject", "Tsm-Dlq-Stream", "Tsm-Dlq-Stream-Seq",
		"Tsm-Dlq-Consumer", "Tsm-Dlq-Deliveries"} {
		if !strings.Contains(doc, h+":") {
			t.Errorf("asyncapi.yaml does not describe the %s header", h)
		}
	}
	if strings.Contains(doc, "\t") {
		t.Errorf("asyncapi.yaml contains a tab")
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}
