package e2e

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// TestForbiddenContentActions is issue 4's acceptance 3: every forbidden
// action gets its documented error and leaves the card unchanged (GET STATUS
// through the central SD before and after, and the card's APDU counter).
func TestForbiddenContentActions(t *testing.T) {
	e := startEnv(t)
	const seID = "0100000000000B01"
	e.enrollBlankSE(seID, "+4915100092001", "2.3.1", time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
	svcs := demoServices(t)
	bank, transit := svcs[0], svcs[1]
	bankKeys := prePersonalize(t, e, seID, bank)
	prePersonalize(t, e, seID, transit)
	before := e.audit(seID)
	if _, ok := before[transit.instanceAID]; !ok {
		t.Fatalf("audit lacks %s: %+v", transit.instanceAID, before)
	}

	t.Run("select another SP's instance", func(t *testing.T) {
		s := keySession(t, e, bank, seID, bankKeys)
		s.begin(contract.OperationOther)
		executed := e.apdusExecuted(seID)
		_, err := s.c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID, Commands: []string{
			upperHex(apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: mustHex(t, transit.instanceAID), Le: 0}.Bytes())}})
		wantCode(t, err, contract.CodeNotAllowed)
		if got := e.apdusExecuted(seID); got != executed {
			t.Fatalf("the card executed %d APDUs of a refused script", got-executed)
		}
		s.end(contract.OutcomeFailure)
	})

	t.Run("delete outside the SP's SD", func(t *testing.T) {
		s := keySession(t, e, bank, seID, bankKeys)
		s.begin(contract.OperationOther)
		iu, err := s.channel.InitializeUpdate(0x30)
		if err != nil {
			t.Fatal(err)
		}
		r1 := s.send([][]byte{s.selectSD(), iu})
		if _, err := s.channel.ProcessInitializeUpdateResponse(mustHex(t, r1.Responses[1])); err != nil {
			t.Fatal(err)
		}
		// C-MAC only: the DELETE's data (the AID) travels in clear.
		ea, err := s.channel.ExternalAuthenticate(0x01)
		if err != nil {
			t.Fatal(err)
		}
		inst := mustHex(t, transit.instanceAID)
		del, err := s.channel.Wrap(apdu.Command{CLA: 0x80, INS: 0xE4, P1: 0x00, P2: 0x00,
			Data: append([]byte{0x4F, byte(len(inst))}, inst...), Le: 0}.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID,
			Commands: []string{upperHex(ea), upperHex(del.Command)}})
		wantCode(t, err, contract.CodeNotAllowed)
		s.end(contract.OutcomeFailure)
	})

	t.Run("second pre-personalize of the same service", func(t *testing.T) {
		resp := serviceCall[contract.PrePersonalizeResponse](t, e.sp(bank.spID), "pre-personalize",
			contract.ServiceRequest{SEID: seID, ServiceID: bank.service})
		if resp.Status != contract.StatusFailed || resp.Error == nil || resp.Error.Code != contract.CodeAlreadyExists {
			t.Fatalf("second pre-personalize: %+v %+v", resp, resp.Error)
		}
	})

	for _, c := range []struct {
		name, seID, msi, gp string
		expires             time.Time
		msgPart             string
	}{
		{"ineligible SE (GP 2.1.1)", "0100000000000B02", "+4915100092002", "2.1.1", time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC), "GP"},
		{"expired SE", "0100000000000B03", "+4915100092003", "2.3.1", time.Now().Add(-24 * time.Hour), "expire"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.enrollBlankSE(c.seID, c.msi, c.gp, c.expires)
			executed := e.apdusExecuted(c.seID)
			resp := serviceCall[contract.PrePersonalizeResponse](t, e.sp(bank.spID), "pre-personalize",
				contract.ServiceRequest{SEID: c.seID, ServiceID: bank.service})
			if resp.Status != contract.StatusFailed || resp.Error == nil || resp.Error.Code != contract.CodeNoEligibleSE ||
				!strings.Contains(strings.ToLower(resp.Error.Message), strings.ToLower(c.msgPart)) {
				t.Fatalf("pre-personalize on %s: %+v %+v", c.name, resp, resp.Error)
			}
			if got := e.apdusExecuted(c.seID); got != executed {
				t.Fatalf("the card executed %d APDUs for a refused pre-personalize", got-executed)
			}
		})
	}

	after := e.audit(seID)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("card content changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestKillDuringPrePersonalize is issue 4's acceptance 5: kill -9 of the
// conversation service or the se-simulator while pre-personalize runs on the
// card; after the restart the procedure completes or is compensated, the card
// holds no orphaned instance, and the SP gets exactly one final response.
func TestKillDuringPrePersonalize(t *testing.T) {
	e := startEnv(t)
	bank := demoServices(t)[0]
	for i, name := range []string{"conversation", "sesimulator"} {
		t.Run(name, func(t *testing.T) {
			seID := "0100000000000C0" + string(rune('1'+i))
			e.enrollBlankSE(seID, "+491510009300"+string(rune('1'+i)), "2.3.1", time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
			delivered := e.watch(t, "tsm.mno.*."+seID+".deliver")
			requestID := "preperso-kill-" + name
			type result struct {
				resp *contract.PrePersonalizeResponse
				err  error
			}
			done := make(chan result, 1)
			go func() {
				var resp contract.PrePersonalizeResponse
				_, err := e.sp(bank.spID).Call(context.Background(), "pre-personalize",
					contract.ServiceRequest{SEID: seID, ServiceID: bank.service}, &resp, spclient.WithRequestID(requestID))
				done <- result{&resp, err}
			}()
			// Kill once the procedure's second card round trip is on its way.
			for n := 0; n < 2; n++ {
				select {
				case <-delivered:
				case <-time.After(60 * time.Second):
					t.Fatal("pre-personalize never reached the MNO adapter")
				}
			}
			e.killAndRestart(name)
			var r result
			select {
			case r = <-done:
			case <-time.After(120 * time.Second):
				t.Fatal("no pre-personalize response after the restart")
			}
			if r.err != nil {
				t.Fatalf("pre-personalize: %v", r.err)
			}
			card := e.audit(seID)
			_, hasInstance := card[bank.instanceAID]
			_, hasSD := card[bank.sdAID]
			switch r.resp.Status {
			case contract.StatusSuccess:
				if !hasInstance || !hasSD || !strings.EqualFold(card[bank.instanceAID].SecurityDomain, bank.sdAID) {
					t.Fatalf("completed, but the card shows instance %v SD %v: %+v", hasInstance, hasSD, card)
				}
			default:
				if hasInstance || hasSD {
					t.Fatalf("failed (%+v) but the card keeps instance %v SD %v", r.resp.Error, hasInstance, hasSD)
				}
				st := serviceCall[contract.ServiceStateResponse](t, e.sp(bank.spID), "get-service-state",
					contract.ServiceRequest{SEID: seID, ServiceID: bank.service})
				if st.State != contract.StateInError {
					t.Fatalf("compensated, state %q, want in-error", st.State)
				}
			}
			t.Logf("after kill -9 of %s: %s", name, r.resp.Status)
			if n := e.responsesFor(bank.spID)[requestID]; n != 1 {
				t.Fatalf("%d responses to the pre-personalize, want 1", n)
			}
		})
	}
}

// watch delivers a signal for every message published on subject from now on
// (TSM_STEPS).
func (e *env) watch(t *testing.T, subject string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cons, err := e.js.OrderedConsumer(ctx, "TSM_STEPS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan struct{}, 16)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case out <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return out
}
