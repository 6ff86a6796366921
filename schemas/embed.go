// Package schemas embeds the JSON Schema of every event type (one file per
// CloudEvents type, named <ce-type>.json) and the AsyncAPI document of every
// channel, so services validate against exactly what is published here.
package schemas

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed *.json asyncapi.yaml
var files embed.FS

// BaseURL prefixes every schema's $id.
const BaseURL = "https://tsmhub.invalid/schemas/"

// FS returns the embedded files.
func FS() fs.FS { return files }

// Types lists the CloudEvents types that have a schema.
func Types() []string {
	entries, _ := fs.Glob(files, "*.json")
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e, ".json"))
	}
	return out
}

// AsyncAPI returns the AsyncAPI 3 document.
func AsyncAPI() []byte {
	b, _ := files.ReadFile("asyncapi.yaml")
	return b
}
