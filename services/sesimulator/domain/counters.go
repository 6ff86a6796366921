package domain

// Counters are the execution counters of one card, for operators and tests.
// They count what was committed: a script re-run after a crash before its
// commit is counted once.
type Counters struct {
	// APDUsExecuted counts the C-APDUs the card received (scripts and manual
	// debug APDUs).
	APDUsExecuted uint64 `json:"apdusExecuted"`
	// ScriptsExecuted counts the scripts run on the card.
	ScriptsExecuted uint64 `json:"scriptsExecuted"`
	// LastScriptID is the script id of the last script run.
	LastScriptID string `json:"lastScriptId,omitempty"`
}

// RecordScript counts a script of which apdus commands were executed.
func (c *Counters) RecordScript(scriptID string, apdus int) {
	c.ScriptsExecuted++
	c.APDUsExecuted += uint64(apdus)
	c.LastScriptID = scriptID
}

// RecordAPDU counts one APDU sent outside a script (manual testing).
func (c *Counters) RecordAPDU() { c.APDUsExecuted++ }
