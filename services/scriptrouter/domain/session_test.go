package domain

import (
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

func TestPhaseScriptIDs(t *testing.T) {
	for _, id := range []string{"s-1", "proc.7.step", "a.open.b"} {
		for _, phase := range []string{PhaseOpen, PhaseRun} {
			base, p, ok := SplitPhaseScriptID(PhaseScriptID(id, phase))
			if !ok || base != id || p != phase {
				t.Errorf("%s/%s: %q %q %v", id, phase, base, p, ok)
			}
		}
	}
	for _, id := range []string{"s-1", ".open", "s.opened"} {
		if _, _, ok := SplitPhaseScriptID(id); ok {
			t.Errorf("%q taken for a phase script id", id)
		}
	}
}

func TestCentralCommandsRunPlainOnTheBasicChannel(t *testing.T) {
	if rej := CheckCentralCommands(parse(t, getData, install, storeData)); rej != nil {
		t.Fatalf("plain basic-channel commands refused: %+v", rej.Err)
	}
	for _, tc := range []struct{ cmd, reason string }{
		{"81CA006600", "logical channel 1"},
		{"84CA006600", "secure messaging"},
		{initUpdate, "INITIALIZE UPDATE"},
		{"8082330010" + strings.Repeat("00", 16), "EXTERNAL AUTHENTICATE"},
		{openChannel, "MANAGE CHANNEL"},
	} {
		rej := CheckCentralCommands(parse(t, getData, tc.cmd))
		if rej == nil || rej.Err.Code != contract.CodeInvalidArgument || !strings.HasPrefix(rej.Err.Message, "command 1: ") ||
			!strings.Contains(rej.Err.Message, tc.reason) || len(rej.Failed) != 1 || rej.Failed[0].Index != 1 {
			t.Errorf("%s: %+v", tc.cmd, rej)
		}
	}
}

func TestKeyPutsOnTheOwnSD(t *testing.T) {
	// Plain PUT KEY: the new KVN (first data byte) is visible.
	_, puts, rej := AuthorizeScript(bank, NewCardState(), parse(t, selectBankSD, putKey))
	if rej != nil || len(puts) != 1 || puts[0] != (KeyPut{Index: 1, SDAID: bankSD, KeyVersion: 0xAA}) {
		t.Fatalf("puts %+v %+v", puts, rej)
	}
	// In a secure channel (CLA 84) the data may be encrypted: KVN 0. The SD
	// comes from the state the previous script left.
	state, _, _ := AuthorizeScript(bank, NewCardState(), parse(t, selectBankSD, initUpdate))
	_, puts, rej = AuthorizeScript(bank, state, parse(t, getData, "84D8300103AABBCC"))
	if rej != nil || len(puts) != 1 || puts[0] != (KeyPut{Index: 1, SDAID: bankSD}) {
		t.Fatalf("puts %+v %+v", puts, rej)
	}
	// On a channel opened from the SD's channel the SD is inherited.
	_, puts, _ = AuthorizeScript(bank, NewCardState(), parse(t, openChannel, "01A4040007"+bankSD+"00", "0170000001", "82D8010103AABBCC"))
	if len(puts) != 1 || puts[0].SDAID != bankSD || puts[0].Index != 3 {
		t.Fatalf("puts on an inherited channel %+v", puts)
	}
	// WithOwnSD: the router selected the SD for a securing central script.
	_, puts, rej = AuthorizeScript(bank, NewCardState().WithOwnSD(0, strings.ToLower(bankSD)), parse(t, putKey))
	if rej != nil || len(puts) != 1 || puts[0].SDAID != bankSD {
		t.Fatalf("puts %+v %+v", puts, rej)
	}
}

func TestCentralRefusals(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		sd   string
		c    *Custody
		want string
	}{
		{"", nil, "knows none"},
		{bankSD, nil, "did not create it with temporary keys"},
		{bankSD, &Custody{SPID: "bank1", State: CustodySP, Since: at},
			"the keys of security domain A000000555AA01 belong to SP bank1 since it replaced them at 2030-01-02T03:04:05Z: secure the script end to end"},
		{bankSD, &Custody{SPID: "bank1", State: CustodyExpired, Since: at}, "at 2030-01-02T03:04:05Z, 72h0m0s after it created them"},
	} {
		rej := CentralRefusal("bank1", "0100000000000001", tc.sd, tc.c, 72*time.Hour)
		if rej.Err.Code != contract.CodeNotAllowed || !strings.Contains(rej.Err.Message, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.c, rej.Err.Message, tc.want)
		}
	}
	held := func(aid string) bool { return aid == "A000000555AA03" }
	two := SPScope{SPID: "bank1", SDAIDs: []string{bankSD, "A000000555AA03"}}
	if sd, ok := PickCentralSD(two, bankSD, held); !ok || sd != "A000000555AA03" {
		t.Errorf("picked %q %v", sd, ok)
	}
	if sd := RefusedSD(two, "A000000555AA03"); sd != "A000000555AA03" {
		t.Errorf("refused SD %q", sd)
	}
}
