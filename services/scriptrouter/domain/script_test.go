package domain

import (
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

func script(continueOnError bool) Script {
	return Script{ScriptID: "s1", ConversationID: "c1", SEID: "0102", ContinueOnError: continueOnError,
		Commands: []string{"80CA006600", "80E60C0000", "80F22002"}}
}

func TestBuildResponse(t *testing.T) {
	cases := []struct {
		name      string
		cont      bool
		responses []string
		seErr     *contract.Error
		status    contract.Status
		code      contract.Code
		message   string
		failed    []contract.ScriptFailure
	}{
		{name: "all succeed", responses: []string{"660a9000", "9000", "6310"}, status: contract.StatusSuccess},
		{name: "warnings succeed", responses: []string{"6283", "6101", "9000"}, status: contract.StatusSuccess},
		{name: "stops at 6982", responses: []string{"9000", "6982"}, status: contract.StatusFailed,
			code:    contract.CodeSecureElementError,
			message: "command 1 (INS E6) returned SW 6982: security status not satisfied; execution stopped",
			failed:  []contract.ScriptFailure{{Index: 1, Command: "80E60C0000", SW: "6982", Reason: "security status not satisfied"}}},
		{name: "continue on error", cont: true, responses: []string{"6A82", "6982", "9000"},
			status: contract.StatusWithWarning, code: contract.CodeSecureElementError, message: "2 of 3 commands failed",
			failed: []contract.ScriptFailure{
				{Index: 0, Command: "80CA006600", SW: "6A82", Reason: "application not found"},
				{Index: 1, Command: "80E60C0000", SW: "6982", Reason: "security status not satisfied"}}},
		{name: "6300 is a failure", responses: []string{"6300"}, status: contract.StatusFailed, code: contract.CodeSecureElementError,
			message: "command 0 (INS CA) returned SW 6300: authentication of host cryptogram failed; execution stopped",
			failed:  []contract.ScriptFailure{{Index: 0, Command: "80CA006600", SW: "6300", Reason: "authentication of host cryptogram failed"}}},
		{name: "SE error wins", responses: []string{}, seErr: contract.Errorf(contract.CodeSEInaccessible, "SE unreachable"),
			status: contract.StatusFailed, code: contract.CodeSEInaccessible, message: "SE unreachable"},
		{name: "expired", responses: nil, seErr: contract.Errorf(contract.CodeExpired, "too late"),
			status: contract.StatusExpired, code: contract.CodeExpired, message: "too late"},
		{name: "short without failure", responses: []string{"9000"}, status: contract.StatusFailed, code: contract.CodeSecureElementError,
			message: "the SE answered 1 of 3 commands and reported no failure; the remaining commands did not run"},
		{name: "too many responses", responses: []string{"9000", "9000", "9000", "9000"}, status: contract.StatusFailed,
			code: contract.CodeInternalError, message: "the SE returned 4 responses for 3 commands; the outcome of the script is unknown"},
		{name: "malformed response", responses: []string{"90"}, status: contract.StatusFailed, code: contract.CodeSecureElementError,
			message: "command 0 (INS CA) returned a malformed response; execution stopped",
			failed:  []contract.ScriptFailure{{Index: 0, Command: "80CA006600", Reason: "the SE returned a malformed response (no status word)"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := BuildResponse(script(tc.cont), tc.responses, tc.seErr)
			if got.Status != tc.status {
				t.Errorf("status %s, want %s", got.Status, tc.status)
			}
			if tc.code == "" && got.Error != nil || tc.code != "" && (got.Error == nil || got.Error.Code != tc.code || got.Error.Message != tc.message) {
				t.Errorf("error %+v, want %s %q", got.Error, tc.code, tc.message)
			}
			if got.ConversationID != "c1" || got.Responses == nil || got.Failed == nil {
				t.Errorf("conversation %q, responses %v, failed %v (both must be non-nil lists)", got.ConversationID, got.Responses, got.Failed)
			}
			if len(got.Failed) != len(tc.failed) {
				t.Fatalf("failed %+v, want %+v", got.Failed, tc.failed)
			}
			for i := range tc.failed {
				if got.Failed[i] != tc.failed[i] {
					t.Errorf("failed[%d] = %+v, want %+v", i, got.Failed[i], tc.failed[i])
				}
			}
		})
	}
}

func TestBuildResponseUppercasesResponses(t *testing.T) {
	got := BuildResponse(script(false), []string{"660a9000", "9000", "9000"}, nil)
	if got.Responses[0] != "660A9000" || len(got.Responses) != 3 {
		t.Errorf("responses %v", got.Responses)
	}
}
