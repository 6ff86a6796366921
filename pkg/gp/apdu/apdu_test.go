package apdu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func h(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCases(t *testing.T) {
	long := strings.Repeat("AB", 300)
	cases := []struct {
		name, in string
		dataLen  int
		le       int
		ext      bool
		iso      int
	}{
		{"case 1", "80F22002", 0, LeAbsent, false, 1},
		{"case 2S", "80CA006600", 0, 256, false, 2},
		{"case 2S Le=10", "80CA006610", 0, 16, false, 2},
		{"case 3S", "80F220020A4F0212345C054F9F70C5", 10, LeAbsent, false, 3},
		{"case 4S", "80F28002024F0000", 2, 256, false, 4},
		{"case 4S Le=FF", "00A4040008A000000151000000FF", 8, 255, false, 4},
		{"case 2E", "80CA0066000100", 0, 256, true, 2},
		{"case 2E max", "80CA0066000000", 0, 65536, true, 2},
		{"case 3E", "80E20000000003010203", 3, LeAbsent, true, 3},
		{"case 4E", "80E200000000030102030000", 3, 65536, true, 4},
		{"case 3E long", "80E20000" + "00012C" + long, 300, LeAbsent, true, 3},
		{"case 4E long", "80E20000" + "00012C" + long + "0102", 300, 258, true, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := h(t, c.in)
			cmd, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(cmd.Data) != c.dataLen || cmd.Le != c.le || cmd.IsExtended() != c.ext || cmd.Case() != c.iso {
				t.Fatalf("got data %d Le %d ext %v case %d", len(cmd.Data), cmd.Le, cmd.IsExtended(), cmd.Case())
			}
			if !bytes.Equal(cmd.Bytes(), in) {
				t.Fatalf("round trip %X", cmd.Bytes())
			}
			if cmd.Hex() != strings.ToUpper(c.in) {
				t.Fatalf("hex %s", cmd.Hex())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrEmpty},
		{"3 bytes", "80F220", ErrTruncated},
		{"Lc too big", "80F220020A4F02", ErrLcMismatch},
		{"Lc too small", "80F22002014F020000", ErrLcMismatch},
		{"ext 6 bytes", "80F2200200AA", ErrInvalidBody},
		{"ext Lc 0", "80F22002000000AA", ErrInvalidLc},
		{"ext Lc mismatch", "80F2200200000501020304", ErrLcMismatch},
		{"ext Lc mismatch 2", "80F22002000002010203", ErrLcMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(h(t, c.in))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Error() == "" {
				t.Fatalf("not a *SyntaxError: %T", err)
			}
		})
	}
}

func TestHexValidation(t *testing.T) {
	if err := Validate("80 ca 00 66 00"); err != nil {
		t.Fatal(err)
	}
	if err := Validate("80:CA:00:66:00\n"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"80CA0", "80CAXX6600", "zz"} {
		err := Validate(bad)
		if !errors.Is(err, ErrHex) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	if err := Validate("80CA"); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if err := Validate(""); !errors.Is(err, ErrEmpty) {
		t.Fatal(err)
	}
	c, err := ParseHex("80f28002024f0000")
	if err != nil || c.P1 != 0x80 || c.Le != 256 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestEncode(t *testing.T) {
	cases := []struct {
		cmd  Command
		want string
	}{
		{Command{CLA: 0x80, INS: 0xCA, P1: 0, P2: 0x66, Le: 0}, "80CA006600"},
		{Command{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02, Le: LeAbsent}, "80F22002"},
		{Command{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02, Data: []byte{0x4F, 0}, Le: 0}, "80F22002024F0000"},
		{Command{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02, Data: []byte{0x4F, 0}, Le: LeAbsent}, "80F22002024F00"},
		{Command{CLA: 0x00, INS: 0xB0, Le: 1000}, "00B00000" + "0003E8"},
		{Command{CLA: 0x00, INS: 0xB0, Le: 65536}, "00B00000" + "000000"},
		{Command{CLA: 0x00, INS: 0xD6, Data: []byte{1}, Le: 0, Extended: true}, "00D60000" + "000001" + "01" + "0000"},
		{Command{CLA: 0x00, INS: 0xB0, Le: 0, Extended: true}, "00B00000" + "000000"},
	}
	for _, c := range cases {
		b, err := c.cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(b)); got != c.want {
			t.Fatalf("%+v = %s, want %s", c.cmd, got, c.want)
		}
	}
	if _, err := (Command{Data: make([]byte, 70000), Le: LeAbsent}).Encode(); !errors.Is(err, ErrInvalidField) {
		t.Fatal(err)
	}
	if _, err := (Command{Le: 70000}).Encode(); !errors.Is(err, ErrInvalidField) {
		t.Fatal(err)
	}
	if _, err := (Command{Le: -2}).Encode(); !errors.Is(err, ErrInvalidField) {
		t.Fatal(err)
	}
	if len((Command{Le: 70000}).Bytes()) != 4 {
		t.Fatal("Bytes should drop an invalid Le")
	}
	if (Command{Le: 0}).Ne() != 256 || (Command{Le: LeAbsent}).Ne() != 0 || (Command{Le: 0, Extended: true}).Ne() != 65536 || (Command{Le: 17}).Ne() != 17 {
		t.Fatal("Ne")
	}
}

func TestResponse(t *testing.T) {
	r, err := ParseResponse(h(t, "E3134F089000"))
	if err != nil || r.SW != SWOK || r.SW1() != 0x90 || r.SW2() != 0 || !r.OK() || len(r.Data) != 4 {
		t.Fatalf("%+v %v", r, err)
	}
	if !bytes.Equal(r.Bytes(), h(t, "E3134F089000")) || r.Hex() != "E3134F089000" {
		t.Fatal("round trip")
	}
	r, err = ParseResponse(h(t, "6A88"))
	if err != nil || r.Data != nil || r.SW != SWReferencedDataNotFound {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := ParseResponse([]byte{0x90}); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if _, err := ParseResponse(nil); !errors.Is(err, ErrEmpty) {
		t.Fatal(err)
	}
	if _, err := ParseResponseHex("90 0"); !errors.Is(err, ErrHex) {
		t.Fatal(err)
	}
}

func TestStatusText(t *testing.T) {
	for sw := range swText {
		if StatusText(sw) == "" || StatusText(sw) == "unknown status" {
			t.Fatalf("%04X has no text", sw)
		}
	}
	// Every status word of gp-card.md 2.9 is in the table.
	for _, sw := range []uint16{0x9000, 0x6310, 0x6300, 0x6283, 0x6200, 0x6400, 0x6581, 0x6700, 0x6881, 0x6882,
		0x6982, 0x6985, 0x6A80, 0x6A81, 0x6A82, 0x6A84, 0x6A86, 0x6A88, 0x6D00, 0x6E00, 0x9484, 0x9485} {
		if _, ok := swText[sw]; !ok {
			t.Fatalf("%04X missing", sw)
		}
	}
	if !strings.Contains(StatusText(0x6110), "16") || !strings.Contains(StatusText(0x6C20), "32") {
		t.Fatal("61xx / 6Cxx")
	}
	if StatusText(0x1234) != "unknown status" {
		t.Fatal("unknown")
	}
	if !IsSuccessOrWarning(0x9000) || !IsSuccessOrWarning(0x6310) || !IsSuccessOrWarning(0x6283) || IsSuccessOrWarning(0x6A88) || IsSuccessOrWarning(0x6982) {
		t.Fatal("IsSuccessOrWarning")
	}
}

func TestStatusError(t *testing.T) {
	cause := errors.New("bad mac")
	err := error(NewStatusError(SWSecurityNotSatisfied, cause))
	wrapped := errors.Join(errors.New("ctx"), err)
	if SWOf(wrapped, 0) != 0x6982 || !errors.Is(wrapped, cause) {
		t.Fatal("SWOf / Is")
	}
	if SWOf(nil, 0x6F00) != SWOK || SWOf(cause, 0x6F00) != 0x6F00 {
		t.Fatal("defaults")
	}
	if !strings.Contains(err.Error(), "6982") || !strings.Contains(NewStatusError(0x6A88, nil).Error(), "6A88") {
		t.Fatal(err.Error())
	}
}

func TestCLA(t *testing.T) {
	cases := []struct {
		cla   byte
		ch    int
		sm    bool
		valid bool
	}{
		{0x00, 0, false, true}, {0x01, 1, false, true}, {0x03, 3, false, true}, {0x04, 0, true, true},
		{0x80, 0, false, true}, {0x83, 3, false, true}, {0x84, 0, true, true}, {0x87, 3, true, true},
		{0x40, 4, false, true}, {0x4F, 19, false, true}, {0x60, 4, true, true}, {0x6F, 19, true, true},
		{0xC0, 4, false, true}, {0xCF, 19, false, true}, {0xE0, 4, true, true}, {0xEF, 19, true, true},
		{0x20, -1, false, false}, {0xA0, -1, false, false}, {0xFF, -1, false, false},
	}
	for _, c := range cases {
		if LogicalChannel(c.cla) != c.ch || IsSecureMessaging(c.cla) != c.sm || ValidCLA(c.cla) != c.valid {
			t.Fatalf("CLA %02X: ch %d sm %v valid %v", c.cla, LogicalChannel(c.cla), IsSecureMessaging(c.cla), ValidCLA(c.cla))
		}
	}
	if WithSecureMessaging(0x81) != 0x85 || WithSecureMessaging(0xC2) != 0xE2 || WithoutSecureMessaging(0xE2) != 0xC2 || WithoutSecureMessaging(0x85) != 0x81 {
		t.Fatal("SM bits")
	}
	if WithoutChannel(0x87) != 0x84 || WithoutChannel(0xEF) != 0xE0 {
		t.Fatal("WithoutChannel")
	}
	for ch := 0; ch < 20; ch++ {
		for _, base := range []byte{0x00, 0x80, 0x84} {
			c := WithChannel(base, ch)
			if LogicalChannel(c) != ch || IsSecureMessaging(c) != IsSecureMessaging(base) || IsProprietary(c) != IsProprietary(base) {
				t.Fatalf("WithChannel(%02X, %d) = %02X", base, ch, c)
			}
		}
	}
	if WithChannel(0x80, 20) != 0x80 {
		t.Fatal("out of range channel")
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "80", "80F22002", "80CA006600", "80F28002024F0000", "80F220020A4F0212345C054F9F70C5",
		"80CA0066000100", "80E200000000030102030000", "80E2000000", "80E20000000000", "80F2200200AA", "0000000001"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		out := c.Bytes()
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %X -> %X", b, out)
		}
		_ = c.Case()
		_ = c.Ne()
		_ = Validate(hex.EncodeToString(b))
		r, err := ParseResponse(b)
		if err == nil && !bytes.Equal(r.Bytes(), b) {
			t.Fatalf("response round trip")
		}
	})
}
