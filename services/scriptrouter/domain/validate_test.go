package domain

import (
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

var limits = Limits{MaxAPDUs: 4, MaxBytes: 64}

func TestValidateScriptAcceptsAllISOCases(t *testing.T) {
	cmds := []string{
		"80f22002",                     // case 1
		"80CA006600",                   // case 2S
		"00A4040008A000000151000000",   // case 3S
		"805000000801020304050607080a", // case 4S, lowercase
	}
	got, rej := ValidateScript(cmds, "", limits)
	if rej != nil {
		t.Fatalf("rejected: %+v", rej.Err)
	}
	if len(got) != 4 {
		t.Fatalf("got %d commands", len(got))
	}
	if got[0].Hex != "80F22002" || got[3].Hex != "805000000801020304050607080A" {
		t.Errorf("canonical hex: %q %q", got[0].Hex, got[3].Hex)
	}
	if got[2].Index != 2 || got[2].APDU.INS != 0xA4 || len(got[2].APDU.Data) != 8 {
		t.Errorf("parsed command 2: %+v", got[2])
	}
}

func TestValidateScriptRejections(t *testing.T) {
	cases := []struct {
		name     string
		commands []string
		securing string
		code     contract.Code
		message  string // exact, or prefix when prefix is set
		prefix   bool
		failed   []int // indexes expected in Failed
	}{
		{name: "Lc too short", commands: []string{"80F22002", "80CA006600", "80E2000005AABBCC"},
			code: contract.CodeInvalidArgument, message: "command 2: Lc says 5 bytes but 3 follow", failed: []int{2}},
		{name: "Lc too long", commands: []string{"80E2000002AABBCCDD"},
			code: contract.CodeInvalidArgument, message: "command 0: Lc says 2 bytes but 4 follow (expected 2, or 3 with Le)", failed: []int{0}},
		{name: "odd hex", commands: []string{"80F2200"},
			code: contract.CodeInvalidArgument, message: "command 0: not a hex string: odd number of hex digits (7)", failed: []int{0}},
		{name: "non hex", commands: []string{"80F22002", "80ZZ2002"},
			code: contract.CodeInvalidArgument, message: "command 1: not a hex string: invalid character at position 2: use hex digits 0-9 and A-F only", failed: []int{1}},
		{name: "spaces", commands: []string{"80F2 2002"},
			code: contract.CodeInvalidArgument, message: "command 0: not a hex string: separator at position 4: write the APDU as one hex string without spaces", failed: []int{0}},
		{name: "truncated header", commands: []string{"80F2"},
			code: contract.CodeInvalidArgument, message: "command 0: the header needs 4 bytes (CLA INS P1 P2) but the command has 2", failed: []int{0}},
		{name: "empty command", commands: []string{""},
			code: contract.CodeInvalidArgument, message: "command 0: empty command", prefix: true, failed: []int{0}},
		{name: "extended Lc 0", commands: []string{"80E20000000000AA"},
			code: contract.CodeInvalidArgument, message: "command 0: extended Lc 0000 is not allowed", prefix: true, failed: []int{0}},
		{name: "several malformed", commands: []string{"XX", "80F22002", "80E2000005AA", "8"},
			code: contract.CodeInvalidArgument, message: "command 0: not a hex string: invalid character at position 0: use hex digits 0-9 and A-F only; 2 more commands are malformed (see failed)",
			failed: []int{0, 2, 3}},
		{name: "reserved CLA", commands: []string{"FFCA000000"},
			code: contract.CodeInvalidArgument, message: "command 0: CLA FF is reserved", prefix: true, failed: []int{0}},
		{name: "INS 6X", commands: []string{"80600000"},
			code: contract.CodeInvalidArgument, message: "command 0: INS 60 is not a valid instruction", prefix: true, failed: []int{0}},
		{name: "empty script", commands: nil,
			code: contract.CodeInvalidArgument, message: "commands is empty: send at least one C-APDU"},
		{name: "too many APDUs", commands: []string{"80F22002", "80F22002", "80F22002", "80F22002", "80F22002"},
			code:    contract.CodeScriptTooLarge,
			message: "the script has 5 APDUs but at most 4 are allowed per script in this conversation: split it into several scripts"},
		{name: "too many bytes", commands: []string{"80E20000" + "3C" + strings.Repeat("00", 60), "80F22002"},
			code:    contract.CodeScriptTooLarge,
			message: "the script has 69 bytes of APDUs but at most 64 bytes are allowed per script in this conversation: split it into several scripts"},
		{name: "unknown securing", commands: []string{"80F22002"}, securing: "both",
			code: contract.CodeInvalidArgument, message: `securing "both" is not supported: use "end-to-end" or "central"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, rej := ValidateScript(tc.commands, tc.securing, limits)
			if rej == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if rej.Err.Code != tc.code {
				t.Errorf("code %s, want %s (%s)", rej.Err.Code, tc.code, rej.Err.Message)
			}
			if tc.prefix && !strings.HasPrefix(rej.Err.Message, tc.message) || !tc.prefix && rej.Err.Message != tc.message {
				t.Errorf("message %q\nwant     %q", rej.Err.Message, tc.message)
			}
			if len(rej.Failed) != len(tc.failed) {
				t.Fatalf("failed %+v, want indexes %v", rej.Failed, tc.failed)
			}
			for i, f := range rej.Failed {
				if f.Index != tc.failed[i] || f.Command != tc.commands[f.Index] || f.Reason == "" || f.SW != "" {
					t.Errorf("failed[%d] = %+v", i, f)
				}
			}
		})
	}
}

func TestValidateScriptLimitsAtTheBoundary(t *testing.T) {
	four := []string{"80F22002", "80F22002", "80F22002", "80F22002"}
	if _, rej := ValidateScript(four, "end-to-end", limits); rej != nil {
		t.Errorf("4 APDUs with a limit of 4 rejected: %v", rej.Err)
	}
	exact := []string{"80E20000" + "3B" + strings.Repeat("00", 59)} // 64 bytes
	if _, rej := ValidateScript(exact, "", limits); rej != nil {
		t.Errorf("64 bytes with a limit of 64 rejected: %v", rej.Err)
	}
	if _, rej := ValidateScript(four, "", Limits{}); rej != nil {
		t.Errorf("no limits: rejected: %v", rej.Err)
	}
}

func TestReasonsNeverEchoDataBytes(t *testing.T) {
	// A malformed command's data may be key material: reasons talk about
	// lengths only.
	secret := "0123456789ABCDEF0123456789ABCDEF"
	_, rej := ValidateScript([]string{"80D8000120" + secret}, "", Limits{})
	if rej == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(rej.Err.Message, secret[:8]) || strings.Contains(rej.Failed[0].Reason, secret[:8]) {
		t.Errorf("reason echoes data: %q", rej.Err.Message)
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{MaxAPDUs: 10}.WithDefaults(Limits{MaxAPDUs: 1, MaxBytes: 2})
	if got != (Limits{MaxAPDUs: 10, MaxBytes: 2}) {
		t.Errorf("got %+v", got)
	}
}

// FuzzValidateScript: whatever the SP sends, validation never panics, either
// accepts every command or rejects with a code, and an accepted command
// re-encodes to its canonical hex.
func FuzzValidateScript(f *testing.F) {
	f.Add("80F22002", "00A4040008A000000151000000", "central", 4, 64)
	f.Add("80E2000005AABBCC", "", "", 0, 0)
	f.Add("0000000000", "00A4040000FFFF00", "end-to-end", 1, 7)
	f.Add("zz", "8", "x", -1, -1)
	f.Fuzz(func(t *testing.T, a, b, securing string, maxAPDUs, maxBytes int) {
		got, rej := ValidateScript([]string{a, b}, securing, Limits{MaxAPDUs: maxAPDUs, MaxBytes: maxBytes})
		if rej != nil {
			if rej.Err == nil || rej.Err.Code == "" || rej.Err.Message == "" {
				t.Fatalf("rejection without code or message: %+v", rej)
			}
			if got != nil {
				t.Fatalf("rejected and returned commands")
			}
			return
		}
		if len(got) != 2 {
			t.Fatalf("accepted %d of 2 commands", len(got))
		}
		for _, c := range got {
			if c.APDU.Hex() != c.Hex {
				t.Fatalf("command %d: re-encodes to %s, canonical %s", c.Index, c.APDU.Hex(), c.Hex)
			}
		}
	})
}
