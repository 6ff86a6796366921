package service_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports/vpcd"
	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

// TestCardServedThroughVPCD runs the service with SESIM_VPCD_ADDR pointing at
// a listener speaking vpcd's protocol: the card enrolled over the bus shows
// up in the reader, answers APDUs, and the fleet records them.
func TestCardServedThroughVPCD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := newHarness(t, func(c *service.Config) {
		c.VPCDAddr = ln.Addr().String()
		c.VPCDSE = strings.ToLower(seUICC) // the service accepts either case
	})
	h.enrol(cardtest.Record(seUICC, "uicc"))

	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(deadline))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the card never came to the reader: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(deadline))
	exchange := func(payload []byte, answered bool) []byte {
		t.Helper()
		if _, err := conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(payload))), payload...)); err != nil {
			t.Fatal(err)
		}
		if !answered {
			return nil
		}
		var hdr [2]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	exchange([]byte{vpcd.CtrlPowerOn}, false)
	if atr := exchange([]byte{vpcd.CtrlGetATR}, true); !bytes.Equal(atr, vpcd.DefaultATR) {
		t.Fatalf("ATR %X", atr)
	}
	if r := exchange(cardtest.Unhex(t, "00A4040000"), true); r[0] != 0x6F || cardtest.SW(t, cardtest.Hex(r)) != 0x9000 {
		t.Fatalf("SELECT: %X, want the ISD FCI", r)
	}
	var cnt ports.CountersJSON
	if code := h.getJSON("/v1/cards/"+seUICC+"/counters", &cnt); code != http.StatusOK || cnt.APDUsExecuted != 1 {
		t.Fatalf("counters HTTP %d %+v, want the reader's APDU committed", code, cnt)
	}
	resp, err := http.Get(h.httpBase + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tsm_sesim_vpcd_connected 1", `tsm_sesim_apdus_executed_total{origin="reader"} 1`, "tsm_sesim_reader_resets_total 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
