package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// testHost is a minimal SCP03 off-card entity for the tests (the card side
// must not be tested with itself, so this reimplements the host rules of
// Amd D 6.2 directly on the primitives).
type testHost struct {
	t                 testing.TB
	c                 *Card
	ch                byte
	sEnc, sMac, sRmac []byte
	dek               []byte
	chain             []byte
	counter           uint32
	level             byte
}

var hostChallenge = []byte{1, 2, 3, 4, 5, 6, 7, 8}

// openSCP03 runs INITIALIZE UPDATE / EXTERNAL AUTHENTICATE on channel ch
// with the given static keys. It fails the test unless both succeed.
func openSCP03(t testing.TB, c *Card, ch byte, kvn byte, enc, mac, dek []byte, level byte) *testHost {
	t.Helper()
	h, sw := tryOpenSCP03(t, c, ch, kvn, enc, mac, dek, level)
	if sw != apdu.SWOK {
		t.Fatalf("open SCP03 KVN %02X: SW %04X", kvn, sw)
	}
	return h
}

func tryOpenSCP03(t testing.TB, c *Card, ch byte, kvn byte, enc, mac, dek []byte, level byte) (*testHost, uint16) {
	t.Helper()
	iu := append([]byte{0x80 | ch, 0x50, kvn, 0x00, 0x08}, hostChallenge...)
	resp := c.Transmit(append(iu, 0x00))
	s := uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1])
	if s != apdu.SWOK {
		return nil, s
	}
	d := resp[:len(resp)-2]
	if len(d) < 29 || d[11] != 0x03 {
		t.Fatalf("bad INITIALIZE UPDATE response %X", d)
	}
	cardChallenge, cryptogram := d[13:21], d[21:29]
	ctx := append(clone(hostChallenge), cardChallenge...)
	h := &testHost{t: t, c: c, ch: ch, dek: dek, level: level, chain: make([]byte, 16)}
	h.sEnc, _ = gpcrypto.SCP03KDF(enc, 0x04, len(enc)*8, ctx)
	h.sMac, _ = gpcrypto.SCP03KDF(mac, 0x06, len(mac)*8, ctx)
	h.sRmac, _ = gpcrypto.SCP03KDF(mac, 0x07, len(mac)*8, ctx)
	cc, _ := gpcrypto.SCP03KDF(h.sMac, 0x00, 64, ctx)
	if !bytes.Equal(cc, cryptogram) {
		t.Fatalf("card cryptogram mismatch")
	}
	hc, _ := gpcrypto.SCP03KDF(h.sMac, 0x01, 64, ctx)
	hdr := []byte{0x84, 0x82, level, 0x00, 0x10}
	m, _ := gpcrypto.CMAC(h.sMac, append(append(clone(h.chain), hdr...), hc...))
	h.chain = m
	ea := append(append([]byte{0x84 | ch, 0x82, level, 0x00, 0x10}, hc...), m[:8]...)
	resp = c.Transmit(ea)
	s = uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1])
	return h, s
}

// wrap protects a plain command at the session level.
func (h *testHost) wrap(plain []byte) []byte {
	cmd, err := apdu.Parse(plain)
	if err != nil {
		h.t.Fatalf("bad test APDU %X: %v", plain, err)
	}
	h.counter++
	data := cmd.Data
	if h.level&scp03.BitCDEC != 0 && len(data) > 0 {
		icv, _ := aesECB(h.sEnc, counterBlockFor(h.counter, 0))
		data, _ = gpcrypto.AESCBCEncrypt(h.sEnc, icv, gpcrypto.Pad80(data, 16))
	}
	cla := apdu.WithSecureMessaging(cmd.CLA)
	lc := len(data) + 8
	m, _ := gpcrypto.CMAC(h.sMac, append(append(clone(h.chain), lcHeader(apdu.WithoutChannel(cla), cmd, lc)...), data...))
	h.chain = m
	out := apdu.Command{CLA: cla, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: append(clone(data), m[:8]...), Le: cmd.Le}
	return out.Bytes()
}

// lcHeader is CLA INS P1 P2 Lc with a 1-byte Lc, or the 3-byte 00 XX XX form
// of GPC 11.1.5.1 when the unsegmented data exceeds 255 bytes.
func lcHeader(cla byte, cmd apdu.Command, lc int) []byte {
	if lc > 255 {
		return []byte{cla, cmd.INS, cmd.P1, cmd.P2, 0, byte(lc >> 8), byte(lc)}
	}
	return []byte{cla, cmd.INS, cmd.P1, cmd.P2, byte(lc)}
}

// aesECB encrypts one block: the C-DECRYPTION / R-ENCRYPTION ICV is
// AES-ECB(S-ENC, counter block) (Amd D 6.2.6, 6.2.7).
func aesECB(key, block []byte) ([]byte, error) {
	b, err := gpcrypto.NewAES(key)
	if err != nil {
		return nil, err
	}
	return gpcrypto.ECBEncrypt(b, block)
}

func counterBlockFor(n uint32, first byte) []byte {
	b := make([]byte, 16)
	b[0] = first
	b[12], b[13], b[14], b[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}

// send wraps, transmits and unwraps; it returns the plain response data
// and the status word.
func (h *testHost) send(plain []byte) ([]byte, uint16) {
	h.t.Helper()
	resp := h.c.Transmit(h.wrap(plain))
	s := uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1])
	d := resp[:len(resp)-2]
	if h.level&scp03.BitRMAC != 0 && apdu.IsSuccessOrWarning(s) {
		if len(d) < 8 {
			h.t.Fatalf("response without R-MAC: %X", resp)
		}
		body, rm := d[:len(d)-8], d[len(d)-8:]
		want, _ := gpcrypto.CMAC(h.sRmac, append(append(clone(h.chain), body...), byte(s>>8), byte(s)))
		if !bytes.Equal(want[:8], rm) {
			h.t.Fatalf("R-MAC mismatch")
		}
		d = body
		if h.level&scp03.BitRENC != 0 && len(d) > 0 {
			icv, _ := aesECB(h.sEnc, counterBlockFor(h.counter, 0x80))
			dec, _ := gpcrypto.AESCBCDecrypt(h.sEnc, icv, d)
			var err error
			if d, err = gpcrypto.Unpad80(dec, 16); err != nil {
				h.t.Fatalf("bad R-ENC padding")
			}
		}
	}
	return d, s
}

// must sends a plain command and requires the status word.
func (h *testHost) must(plain string, want uint16) []byte {
	h.t.Helper()
	d, s := h.send(hx(h.t, plain))
	if s != want {
		h.t.Fatalf("%s: SW %04X, want %04X", plain, s, want)
	}
	return d
}

// putKeyData builds PUT KEY data for an AES SCP03 key set (Amd D 7.2).
func putKeyData(t testing.TB, dek []byte, newKVN byte, keys ...[]byte) []byte {
	out := []byte{newKVN}
	for _, k := range keys {
		enc, err := gpcrypto.AESCBCEncrypt(dek, nil, k)
		if err != nil {
			t.Fatal(err)
		}
		kcv, _ := gpcrypto.AESKCV(k)
		out = append(out, 0x88, byte(len(enc)+1), byte(len(k)))
		out = append(out, enc...)
		out = append(out, 0x03)
		out = append(out, kcv...)
	}
	return out
}

func cmdBytes(cla, ins, p1, p2 byte, data []byte, le bool) []byte {
	c := apdu.Command{CLA: cla, INS: ins, P1: p1, P2: p2, Data: data, Le: apdu.LeAbsent}
	if le {
		c.Le = 256
	}
	return c.Bytes()
}

func lvs(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, tlv.AppendLV(nil, f)...)
	}
	return out
}

// statusEntries parses a GET STATUS TLV response into AID -> record.
type statusRec struct {
	lc   byte
	priv []byte
	sd   []byte
}

func parseStatus(t testing.TB, d []byte) map[string]statusRec {
	t.Helper()
	objs, err := tlv.Parse(d)
	if err != nil {
		t.Fatalf("bad GET STATUS response %X", d)
	}
	out := map[string]statusRec{}
	for _, o := range objs {
		inner, err := tlv.Parse(o.Value)
		if err != nil {
			t.Fatalf("bad E3 %X", o.Value)
		}
		var aid []byte
		var rec statusRec
		for _, x := range inner {
			switch x.Tag {
			case 0x4F:
				aid = x.Value
			case 0x9F70:
				rec.lc = x.Value[0]
			case 0xC5:
				rec.priv = x.Value
			case 0xCC:
				rec.sd = x.Value
			}
		}
		out[up(aid)] = rec
	}
	return out
}

// getStatusAll collects all GET STATUS pages for P1.
func (h *testHost) getStatusAll(p1 byte) map[string]statusRec {
	h.t.Helper()
	var all []byte
	p2 := byte(0x02)
	for i := 0; i < 50; i++ {
		d, s := h.send(cmdBytes(0x80|h.ch, 0xF2, p1, p2, hx(h.t, "4F00"), true))
		all = append(all, d...)
		if s == apdu.SWOK {
			return parseStatus(h.t, all)
		}
		if s != apdu.SWMoreData {
			h.t.Fatalf("GET STATUS %02X: SW %04X", p1, s)
		}
		p2 = 0x03
	}
	h.t.Fatalf("GET STATUS does not end")
	return nil
}

func selectAID(t testing.TB, c *Card, ch byte, aid []byte, want string) {
	t.Helper()
	mustTransmit(t, c, up(cmdBytes(ch, 0xA4, 0x04, 0x00, aid, true)), want)
}

// issuerKeys returns the SCP03 keys of an issuer SD of c.
func issuerKeys(t testing.TB, c *Card, aid []byte) (enc, mac, dek []byte) {
	t.Helper()
	enc, mac, dek, err := DeriveSCP03Keys(testMaster, SDKDD(c.KDD(), aid))
	if err != nil {
		t.Fatal(err)
	}
	return enc, mac, dek
}

// openIssuerSD selects an issuer SD on channel ch and opens SCP03 at level 33.
func openIssuerSD(t testing.TB, c *Card, ch byte, aid []byte) *testHost {
	t.Helper()
	selectAID(t, c, ch, aid, "9000")
	enc, mac, dek := issuerKeys(t, c, aid)
	return openSCP03(t, c, ch, KVNIssuer, enc, mac, dek, 0x33)
}
