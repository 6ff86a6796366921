package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// Script is a script in flight: accepted, routed to the SE's MNO adapter and
// waiting for the SE's responses. It holds what the response needs (the
// commands to name failures, continueOnError to pick the status) and what the
// conversation needs to match it (request, conversation and script ids).
type Script struct {
	ScriptID       string            `json:"scriptId"`
	ConversationID string            `json:"conversationId"`
	SEID           string            `json:"seId"`
	MNO            string            `json:"mno"`
	Request        events.RequestRef `json:"request"`
	// Commands are the canonical (uppercase) hex C-APDUs, in order.
	Commands        []string  `json:"commands"`
	ContinueOnError bool      `json:"continueOnError"`
	ValidUntil      time.Time `json:"validUntil,omitempty"`
	AcceptedAt      time.Time `json:"acceptedAt"`
	// Session is set when the router secures the script itself (a procedure
	// step, or securing central): the round trip it waits for and what it
	// needs to unwrap the responses.
	Session *Session `json:"session,omitempty"`
	// KeyPuts are the script's PUT KEY commands on the SP's own SD (rotation
	// detection); none for procedure steps.
	KeyPuts []KeyPut `json:"keyPuts,omitempty"`
}

// Script states reported by the HTTP API.
const (
	// StateInFlight: delivered to the MNO adapter, no response yet.
	StateInFlight = "in-flight"
	// StateCompleted: the script ended (executed, failed, expired or rejected
	// before delivery) and its outcome went to the conversation service.
	StateCompleted = "completed"
)

// Summary is what the router tells operators about a script: state and
// counts, never APDU data (command or response bytes).
type Summary struct {
	ScriptID       string `json:"scriptId"`
	ConversationID string `json:"conversationId"`
	SEID           string `json:"seId"`
	MNO            string `json:"mno,omitempty"`
	SPID           string `json:"spId"`
	State          string `json:"state"`
	// Phase is the round trip of the router's own secure channel a script in
	// flight waits for (open, run); empty for scripts secured end to end.
	Phase       string          `json:"phase,omitempty"`
	Status      contract.Status `json:"status,omitempty"`
	ErrorCode   contract.Code   `json:"errorCode,omitempty"`
	Commands    int             `json:"commands"`
	Responses   int             `json:"responses"`
	Failed      int             `json:"failed"`
	AcceptedAt  time.Time       `json:"acceptedAt"`
	CompletedAt *time.Time      `json:"completedAt,omitempty"`
}

// InFlightSummary describes a script still in flight.
func (s Script) InFlightSummary() Summary {
	sum := Summary{ScriptID: s.ScriptID, ConversationID: s.ConversationID, SEID: s.SEID, MNO: s.MNO,
		SPID: s.Request.SPID, State: StateInFlight, Commands: len(s.Commands), AcceptedAt: s.AcceptedAt}
	if s.Session != nil {
		sum.Phase = s.Session.Phase
	}
	return sum
}

// CompletedSummary describes a script that ended with resp.
func CompletedSummary(s Script, resp contract.SendScriptResponse, at time.Time) Summary {
	sum := s.InFlightSummary()
	sum.State, sum.Phase = StateCompleted, ""
	sum.Status = resp.Status
	if resp.Error != nil {
		sum.ErrorCode = resp.Error.Code
	}
	sum.Responses = len(resp.Responses)
	sum.Failed = len(resp.Failed)
	at = at.UTC()
	sum.CompletedAt = &at
	return sum
}

// RejectedResponse is the send-script response of a script refused before
// delivery: Failed (or Expired) with the rejection's error, no responses.
func RejectedResponse(conversationID string, rej *Rejection) contract.SendScriptResponse {
	failed := rej.Failed
	if failed == nil {
		failed = []contract.ScriptFailure{}
	}
	return contract.SendScriptResponse{Result: contract.Failure(rej.Err), ConversationID: conversationID,
		Responses: []string{}, Failed: failed}
}

// BuildResponse turns the R-APDUs of an executed script into the send-script
// response:
//   - responses are the R-APDUs in uppercase hex, in order;
//   - failed has one entry per response whose SW is not a success
//     (events.CommandSucceeded), with the GP status text as the reason;
//   - no failure: Executed-Success; failures with continueOnError:
//     Executed-WithWarning; failures without: Failed, naming the first one;
//   - seErr (the SE could not be reached or the script expired) wins: Failed,
//     or Expired for EXPIRED.
//
// Responses that do not fit the script (more responses than commands, a
// response too short for a status word, or fewer responses than commands with
// no failure to explain it) end Failed: the SP must not believe its script ran.
func BuildResponse(s Script, responses []string, seErr *contract.Error) contract.SendScriptResponse {
	m := len(s.Commands)
	resp := contract.SendScriptResponse{ConversationID: s.ConversationID, Responses: make([]string, 0, len(responses)),
		Failed: []contract.ScriptFailure{}}
	type firstFailure struct {
		index int
		sw    uint16
		ok    bool // the response parsed (sw is meaningful)
	}
	var first *firstFailure
	extra := 0
	for i, r := range responses {
		if i >= m {
			extra++
			continue
		}
		b, err := apdu.DecodeHex(r)
		var rapdu apdu.Response
		if err == nil {
			rapdu, err = apdu.ParseResponse(b)
		}
		if err != nil {
			resp.Responses = append(resp.Responses, strings.ToUpper(r))
			resp.Failed = append(resp.Failed, contract.ScriptFailure{Index: i, Command: s.Commands[i],
				Reason: "the SE returned a malformed response (no status word)"})
			if first == nil {
				first = &firstFailure{index: i}
			}
			continue
		}
		resp.Responses = append(resp.Responses, rapdu.Hex())
		if !events.CommandSucceeded(rapdu.SW) {
			resp.Failed = append(resp.Failed, contract.ScriptFailure{Index: i, Command: s.Commands[i],
				SW: fmt.Sprintf("%04X", rapdu.SW), Reason: apdu.StatusText(rapdu.SW)})
			if first == nil {
				first = &firstFailure{index: i, sw: rapdu.SW, ok: true}
			}
		}
	}
	switch {
	case seErr != nil:
		resp.Result = contract.Failure(seErr)
	case extra > 0:
		resp.Result = contract.Failure(contract.Errorf(contract.CodeInternalError,
			"the SE returned %d responses for %d commands; the outcome of the script is unknown", len(responses), m))
	case first == nil && len(resp.Responses) < m:
		resp.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError,
			"the SE answered %d of %d commands and reported no failure; the remaining commands did not run", len(resp.Responses), m))
	case first == nil:
		resp.Result = contract.Success()
	case s.ContinueOnError:
		resp.Result = contract.Result{Status: contract.StatusWithWarning, Error: contract.Errorf(contract.CodeSecureElementError,
			"%d of %d commands failed", len(resp.Failed), m)}
	case !first.ok:
		resp.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError,
			"command %d (INS %s) returned a malformed response; execution stopped", first.index, insOf(s.Commands[first.index])))
	default:
		resp.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError,
			"command %d (INS %s) returned SW %04X: %s; execution stopped",
			first.index, insOf(s.Commands[first.index]), first.sw, apdu.StatusText(first.sw)))
	}
	return resp
}

// insOf returns the INS byte of a stored command in hex ("??" if it does not
// parse, which cannot happen for a validated script).
func insOf(command string) string {
	c, err := apdu.ParseHex(command)
	if err != nil {
		return "??"
	}
	return fmt.Sprintf("%02X", c.INS)
}
