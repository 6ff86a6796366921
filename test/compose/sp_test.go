//go:build compose

package compose

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// sp is one SP TSM talking to the deployed tsmhub through the NATS ports
// published on the host.
type sp struct {
	t     *testing.T
	id    string
	sdAID string
	c     *spclient.Client
	mu    sync.Mutex
	// sends counts how often each request id was published: an SP re-sends a
	// request (same ce-id) when it got no answer, e.g. while a NATS node is
	// away, and tsmhub may then answer each copy.
	sends map[string]int
}

func newSP(t *testing.T, js jetstream.JetStream, spID string) *sp {
	t.Helper()
	var sdAID string
	for _, d := range devstack.DemoSPs {
		if d.SPID == spID {
			sdAID = d.SDAID
		}
	}
	c, err := spclient.New(js, spID, spclient.WithTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &sp{t: t, id: spID, sdAID: sdAID, c: c, sends: map[string]int{}}
}

// try runs one request under a fixed request id. When no response could be
// had (the publish failed while a NATS node was away, or the answer did not
// come in time) it sends the same request again with the same ce-id, as an
// SP TSM does: tsmhub never executes a request id twice. A Failed response
// is returned at once.
func (s *sp) try(op string, fn func(ctx context.Context, opts ...spclient.CallOption) error) error {
	id := "compose-" + bus.NewID()
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		s.sends[id]++
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		err := fn(ctx, spclient.WithRequestID(id))
		cancel()
		var failed *spclient.FailedError
		if err == nil || errors.As(err, &failed) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		s.t.Logf("%s %s request %s, attempt %d: %v: sending it again", s.id, op, id, attempt, err)
		time.Sleep(time.Second) // back-off before the re-send, not a synchronisation
	}
}

// call is try that fails the test.
func (s *sp) call(op string, fn func(ctx context.Context, opts ...spclient.CallOption) error) {
	s.t.Helper()
	if err := s.try(op, fn); err != nil {
		s.t.Fatalf("%s %s: %v", s.id, op, err)
	}
}

// session is an SP's end-to-end SCP03 work on one SE across conversations.
type session struct {
	sp      *sp
	seID    string
	channel *spclient.SecureChannel
	convID  string
	// sent counts the APDUs sent in scripts: the card must execute each once.
	sent int
	// wrapped are the secured commands of the script in flight.
	wrapped []*spclient.Wrapped
}

func (s *sp) session(seID string) *session {
	s.t.Helper()
	ch, err := spclient.NewSecureChannel(spclient.SecureChannelConfig{MasterKey: mustHex(s.t, devstack.DemoSPMasterKey)})
	if err != nil {
		s.t.Fatal(err)
	}
	return &session{sp: s, seID: seID, channel: ch}
}

// lookups runs get-se-id and get-se-data (Fig. 3, 352-362).
func (ss *session) lookups(msi string) {
	t := ss.sp.t
	t.Helper()
	var id *contract.GetSEIDResponse
	ss.sp.call("get-se-id", func(ctx context.Context, o ...spclient.CallOption) (err error) {
		id, err = ss.sp.c.GetSEID(ctx, contract.GetSEIDRequest{MSI: msi}, o...)
		return err
	})
	if id.SEID != ss.seID || id.Status != contract.StatusSuccess {
		t.Fatalf("get-se-id %s: %+v", msi, id)
	}
	var data *contract.GetSEDataResponse
	ss.sp.call("get-se-data", func(ctx context.Context, o ...spclient.CallOption) (err error) {
		data, err = ss.sp.c.GetSEData(ctx, contract.GetSEDataRequest{SEID: ss.seID}, o...)
		return err
	})
	if data.SEData == nil || data.SEData.SecurityDomain == nil || !strings.EqualFold(data.SEData.SecurityDomain.AID, ss.sp.sdAID) {
		t.Fatalf("get-se-data %s: %+v", ss.seID, data)
	}
}

func (ss *session) begin(operation string) {
	t := ss.sp.t
	t.Helper()
	var resp *contract.BeginConversationResponse
	ss.sp.call("begin-conversation", func(ctx context.Context, o ...spclient.CallOption) (err error) {
		resp, err = ss.sp.c.BeginConversation(ctx, contract.BeginConversationRequest{
			SEID: ss.seID, TargetAID: ss.sp.sdAID, RequestedOperation: operation}, o...)
		return err
	})
	if resp.Status != contract.StatusSuccess || resp.ConversationID == "" {
		t.Fatalf("begin-conversation: %+v", resp)
	}
	ss.convID = resp.ConversationID
}

func (ss *session) end() {
	t := ss.sp.t
	t.Helper()
	var resp *contract.EndConversationResponse
	ss.sp.call("end-conversation", func(ctx context.Context, o ...spclient.CallOption) (err error) {
		resp, err = ss.sp.c.EndConversation(ctx, contract.EndConversationRequest{
			ConversationID: ss.convID, Outcome: contract.OutcomeSuccess}, o...)
		return err
	})
	if resp.Status != contract.StatusSuccess || resp.ConversationID != ss.convID {
		t.Fatalf("end-conversation: %+v", resp)
	}
}

// trySend sends one script; it returns an error instead of failing the test,
// so that it can run in a goroutine.
func (ss *session) trySend(commands [][]byte) (*contract.SendScriptResponse, error) {
	hexCmds := make([]string, len(commands))
	for i, c := range commands {
		hexCmds[i] = strings.ToUpper(hex.EncodeToString(c))
	}
	var resp *contract.SendScriptResponse
	err := ss.sp.try("send-script", func(ctx context.Context, o ...spclient.CallOption) (err error) {
		resp, err = ss.sp.c.SendScript(ctx, contract.SendScriptRequest{ConversationID: ss.convID, Commands: hexCmds}, o...)
		return err
	})
	return resp, err
}

// send sends one script and checks that every command answered 9000.
func (ss *session) send(commands [][]byte) *contract.SendScriptResponse {
	ss.sp.t.Helper()
	ss.sent += len(commands)
	resp, err := ss.trySend(commands)
	ss.checkScript(commands, resp, err)
	return resp
}

func (ss *session) checkScript(commands [][]byte, resp *contract.SendScriptResponse, err error) {
	t := ss.sp.t
	t.Helper()
	if err != nil {
		t.Fatalf("send-script on %s: %v", ss.seID, err)
	}
	if resp.Status != contract.StatusSuccess || len(resp.Responses) != len(commands) || len(resp.Failed) != 0 {
		t.Fatalf("send-script on %s: %+v", ss.seID, resp)
	}
	for i, r := range resp.Responses {
		b, err := hex.DecodeString(r)
		if err != nil || len(b) < 2 {
			t.Fatalf("response %d %q is not an R-APDU", i, r)
		}
		if sw := uint16(b[len(b)-2])<<8 | uint16(b[len(b)-1]); sw != apdu.SWOK {
			t.Fatalf("command %d answered %04X", i, sw)
		}
	}
}

func (ss *session) selectSD() []byte {
	return apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: mustHex(ss.sp.t, ss.sp.sdAID), Le: 0}.Bytes()
}

// openScript is the first script of Fig. 3's key rotation conversation:
// SELECT the SP's SD and INITIALIZE UPDATE.
func (ss *session) openScript() [][]byte {
	iu, err := ss.channel.InitializeUpdate(0x30)
	if err != nil {
		ss.sp.t.Fatal(err)
	}
	return [][]byte{ss.selectSD(), iu}
}

// opened checks the card's INITIALIZE UPDATE response (its cryptogram).
func (ss *session) opened(resp *contract.SendScriptResponse) {
	if _, err := ss.channel.ProcessInitializeUpdateResponse(mustHex(ss.sp.t, resp.Responses[1])); err != nil {
		ss.sp.t.Fatalf("INITIALIZE UPDATE response: %v", err)
	}
}

// workScript is the second script: EXTERNAL AUTHENTICATE (C-MAC, C-DEC,
// R-MAC, R-ENC), a secured GET STATUS and a secured STORE DATA.
func (ss *session) workScript() [][]byte {
	t := ss.sp.t
	ea, err := ss.channel.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	getStatus, err := ss.channel.Wrap(mustHex(t, "80F24002024F0000"))
	if err != nil {
		t.Fatal(err)
	}
	storeData, err := ss.channel.Wrap(mustHex(t, "80E2900006DF0103010203"))
	if err != nil {
		t.Fatal(err)
	}
	ss.wrapped = []*spclient.Wrapped{getStatus, storeData}
	return [][]byte{ea, getStatus.Command, storeData.Command}
}

// worked checks the card authenticated the SP and the R-MACs of the secured
// responses.
func (ss *session) worked(resp *contract.SendScriptResponse) {
	t := ss.sp.t
	if err := spclient.CheckExternalAuthenticateResponse(mustHex(t, resp.Responses[0])); err != nil {
		t.Fatal(err)
	}
	for i, w := range ss.wrapped {
		u, err := ss.channel.Unwrap(w, mustHex(t, resp.Responses[i+1]))
		if err != nil {
			t.Fatalf("secured response %d: %v", i+1, err)
		}
		if !u.RMACVerified || u.SW != apdu.SWOK {
			t.Fatalf("secured response %d: R-MAC verified %v, SW %04X", i+1, u.RMACVerified, u.SW)
		}
	}
}

// walkthrough is Fig. 3 without faults: look-ups, a key-rotation
// conversation with the two SCP03 scripts, then a personalization
// conversation with one script.
func (ss *session) walkthrough(msi string) {
	ss.lookups(msi)
	ss.begin(contract.OperationKeyRotation)
	ss.opened(ss.send(ss.openScript()))
	ss.worked(ss.send(ss.workScript()))
	ss.end()
	ss.begin(contract.OperationPersonalization)
	ss.send([][]byte{ss.selectSD()})
	ss.end()
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
