package domain

import (
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
)

// AIDs of the tests: bank1 owns its SD and one instance; transit1's SD is
// another SP's.
const (
	bankSD       = "A000000555AA01"
	bankInstance = "A0000005550101"
	transitSD    = "A000000555AA02"
)

var bank = SPScope{SPID: "bank1", SDAIDs: []string{bankSD}, InstanceAIDs: []string{bankInstance}}

// Commands of the tests.
const (
	selectBankSD       = "00A4040007" + bankSD + "00"
	selectBankInstance = "00A4040007" + bankInstance
	selectTransitSD    = "00A4040007" + transitSD + "00"
	selectISD          = "00A4040000"
	putKey             = "80D8010103AABBCC"
	getData            = "80CA006600"
	initUpdate         = "8050300008010203040506070800"
	storeData          = "80E2900003DF0101"
	install            = "80E60C0005AABBCCDDEE00"
	openChannel        = "0070000001" // MANAGE CHANNEL open, card assigns
	closeChannel1      = "0170800100" // MANAGE CHANNEL close channel 1 (Le 00 is harmless)
)

// parse validates commands as the router does before authorization.
func parse(t *testing.T, commands ...string) []Command {
	t.Helper()
	cmds, rej := ValidateScript(commands, "", Limits{MaxAPDUs: 32, MaxBytes: 4096})
	if rej != nil {
		t.Fatalf("validation: %+v", rej.Err)
	}
	return cmds
}

func wantAllowed(t *testing.T, state CardState, commands ...string) CardState {
	t.Helper()
	next, rej := Authorize(bank, state, parse(t, commands...))
	if rej != nil {
		t.Fatalf("%v refused: %s", commands, rej.Err.Message)
	}
	return next
}

func wantRefused(t *testing.T, state CardState, index int, reasonPart string, commands ...string) {
	t.Helper()
	next, rej := Authorize(bank, state, parse(t, commands...))
	if rej == nil {
		t.Fatalf("%v allowed, want command %d refused", commands, index)
	}
	if rej.Err.Code != contract.CodeNotAllowed || !strings.HasPrefix(rej.Err.Message, "command "+itoa(index)+": ") ||
		!strings.Contains(rej.Err.Message, reasonPart) {
		t.Errorf("error %+v, want NOT_ALLOWED for command %d mentioning %q", rej.Err, index, reasonPart)
	}
	if len(rej.Failed) != 1 || rej.Failed[0].Index != index || rej.Failed[0].Reason == "" {
		t.Errorf("failed %+v, want one entry for command %d", rej.Failed, index)
	}
	if len(next.Channels) != len(state.Channels) {
		t.Errorf("a refused script changed the state: %v -> %v", state.Channels, next.Channels)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestOwnSecurityDomainAndInstanceMayBeSelected(t *testing.T) {
	s := wantAllowed(t, NewCardState(), selectBankSD, initUpdate, putKey, install, getData)
	if s.Channels[0] != SelectedOwnSD {
		t.Errorf("channel 0 = %q, want the own SD", s.Channels[0])
	}
	s = wantAllowed(t, NewCardState(), selectBankInstance, getData, storeData)
	if s.Channels[0] != SelectedOwnInstance {
		t.Errorf("channel 0 = %q, want an own instance", s.Channels[0])
	}
	// Lowercase AIDs are the same AIDs.
	wantAllowed(t, NewCardState(), strings.ToLower(selectBankSD), putKey)
}

func TestOtherSPsSecurityDomainIsRefused(t *testing.T) {
	_, rej := Authorize(bank, NewCardState(), parse(t, selectBankSD, selectTransitSD))
	if rej == nil {
		t.Fatal("SELECT of transit1's SD allowed")
	}
	const want = "command 1: SELECT of an AID that is not bank1's security domain or one of its service instances (" + transitSD + ")"
	if rej.Err.Message != want {
		t.Errorf("message %q, want %q", rej.Err.Message, want)
	}
	if rej.Failed[0].Command != selectTransitSD {
		t.Errorf("failed command %q, want the SELECT the SP sent", rej.Failed[0].Command)
	}
}

func TestISDIsRefused(t *testing.T) {
	wantRefused(t, NewCardState(), 1, "issuer security domain", selectBankSD, selectISD)
	// Next occurrence could land on another application.
	wantRefused(t, NewCardState(), 0, "next or previous occurrence", "00A4040207"+bankSD)
}

func TestCommandsWithTheISDSelectedAreRefused(t *testing.T) {
	wantRefused(t, NewCardState(), 0, "PUT KEY on logical channel 0 is only allowed with bank1's security domain selected", putKey)
	wantRefused(t, NewCardState(), 0, "INITIALIZE UPDATE", initUpdate)
	wantRefused(t, NewCardState(), 0, "INS CA", getData)
	wantRefused(t, NewCardState(), 1, "INSTALL", selectBankInstance, install)
}

func TestPutKeyOnlyWithTheOwnSD(t *testing.T) {
	wantAllowed(t, NewCardState(), selectBankSD, putKey)
	// An instance is not a security domain.
	wantRefused(t, NewCardState(), 1, "PUT KEY", selectBankInstance, putKey)
	// Failed names the header only: PUT KEY data carries wrapped keys.
	_, rej := Authorize(bank, NewCardState(), parse(t, putKey))
	if rej == nil || rej.Failed[0].Command != "80D80101" {
		t.Errorf("failed %+v, want the header 80D80101 only", rej)
	}
}

func TestStateCarriesAcrossScripts(t *testing.T) {
	s := wantAllowed(t, NewCardState(), selectBankSD, initUpdate)
	// The next script of the conversation runs EXTERNAL AUTHENTICATE and
	// PUT KEY on the SD the first one selected.
	s = wantAllowed(t, s, "8482330010"+strings.Repeat("00", 16), putKey)
	// A new conversation starts from a reset card.
	wantRefused(t, NewCardState(), 0, "PUT KEY", putKey)
	// The zero state (nothing stored) is a reset card too.
	wantRefused(t, CardState{}, 0, "PUT KEY", putKey)
	if s.Channels[0] != SelectedOwnSD {
		t.Errorf("state %v", s.Channels)
	}
}

func TestLogicalChannels(t *testing.T) {
	// Channel 1 opened from the basic channel starts on the ISD.
	wantRefused(t, NewCardState(), 1, "logical channel 1", openChannel, "81D8010103AABBCC")
	s := wantAllowed(t, NewCardState(), openChannel, "01A4040007"+bankSD+"00", "81D8010103AABBCC")
	if s.Channels[1] != SelectedOwnSD || s.Channels[0] != SelectedISD {
		t.Fatalf("channels %v, want own SD on 1 and the ISD on 0", s.Channels)
	}
	// Channel 0 still has the ISD.
	wantRefused(t, s, 0, "logical channel 0", putKey)
	// A channel that is not open is refused; closing channel 1 closes it.
	wantRefused(t, NewCardState(), 0, "not open", "02A4040007"+bankSD)
	s = wantAllowed(t, s, closeChannel1)
	wantRefused(t, s, 0, "not open", "81CA006600")
	// A channel opened from channel 1 inherits its selection.
	s = wantAllowed(t, NewCardState(), openChannel, "01A4040007"+bankSD, "0170000002", "82D8010103AABBCC")
	if s.Channels[2] != SelectedOwnSD {
		t.Errorf("channel 2 = %q", s.Channels[2])
	}
	// Further interindustry class: channel 4 + n.
	s = wantAllowed(t, NewCardState(), "0070000401", "40A4040007"+bankSD)
	if s.Channels[4] != SelectedOwnSD {
		t.Errorf("channels %v, want own SD on 4", s.Channels)
	}
}

func TestRefusalNeverNamesAnotherSPsAIDs(t *testing.T) {
	_, rej := Authorize(bank, NewCardState(), parse(t, getData))
	if rej == nil {
		t.Fatal("GET DATA with the ISD selected allowed")
	}
	for _, aid := range []string{transitSD, bankSD, bankInstance} {
		if strings.Contains(rej.Err.Message, aid) || strings.Contains(rej.Failed[0].Reason, aid) {
			t.Errorf("message %q names AID %s the SP did not send", rej.Err.Message, aid)
		}
	}
}

func TestDeleteAndSetStatusTargets(t *testing.T) {
	const deleteTransit = "80E4000009" + "4F07" + transitSD + "00"
	const deleteOwn = "80E4000009" + "4F07" + bankInstance + "00"
	wantAllowed(t, NewCardState(), selectBankSD, deleteOwn)
	wantRefused(t, NewCardState(), 1, "DELETE of an AID that is not bank1's security domain or one of its service instances (A000000555AA02)",
		selectBankSD, deleteTransit)
	wantRefused(t, NewCardState(), 1, "SET STATUS of the card", selectBankSD, "80F0807F00")
	wantRefused(t, NewCardState(), 1, "SET STATUS of an AID", selectBankSD, "80F0408007"+transitSD)
	// In an SP session at level 01 (C-MAC only) the data is in clear: data || 8-byte MAC.
	mac := strings.Repeat("11", 8)
	wrappedDelete := "84E4000011" + "4F07" + transitSD + mac + "00"
	wantRefused(t, NewCardState(), 3, "DELETE of an AID", selectBankSD, initUpdate, "8482010010"+strings.Repeat("00", 16), wrappedDelete)
	// At level 03 (C-DECRYPTION) the router cannot read it: the card decides.
	wantAllowed(t, NewCardState(), selectBankSD, initUpdate, "8482030010"+strings.Repeat("00", 16), wrappedDelete)
	// A PUT KEY at level 01 shows its new KVN.
	_, puts, _ := AuthorizeScript(bank, NewCardState(), parse(t, selectBankSD, initUpdate, "8482010010"+strings.Repeat("00", 16),
		"84D830810B31"+strings.Repeat("22", 2)+mac))
	// The INITIALIZE UPDATE on the own SD is listed too: its response shows
	// the key version in clear (for PUT KEYs the router cannot read).
	if len(puts) != 2 || !puts[0].InitializeUpdate || puts[0].Index != 1 || puts[1].InitializeUpdate || puts[1].KeyVersion != 0x31 {
		t.Errorf("puts %+v", puts)
	}
}
