package tlv

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

func TestParseGetStatus(t *testing.T) {
	// Real ISD entry (kaoh scp03Test.c): 9F70 with 2 bytes, CE, CC, EA.
	b := h(t, "E3324F08A0000001510000009F70020F00C50382FC80C407A0000001515350CE020100CC08A000000151000000EA058003008000")
	list, err := Parse(b)
	if err != nil || len(list) != 1 || list[0].Tag != 0xE3 || !list[0].Constructed() {
		t.Fatalf("%v %v", list, err)
	}
	if !bytes.Equal(list[0].Raw, b) {
		t.Fatal("Raw")
	}
	kids, err := list[0].Children()
	if err != nil {
		t.Fatal(err)
	}
	var tags []uint32
	for _, k := range kids {
		tags = append(tags, k.Tag)
	}
	want := []uint32{0x4F, 0x9F70, 0xC5, 0xC4, 0xCE, 0xCC, 0xEA}
	if len(tags) != len(want) {
		t.Fatalf("tags %X", tags)
	}
	for i := range want {
		if tags[i] != want[i] {
			t.Fatalf("tags %X", tags)
		}
	}
	lcs, ok := Find(kids, 0x9F70)
	if !ok || !bytes.Equal(lcs.Value, []byte{0x0F, 0x00}) {
		t.Fatal("9F70")
	}
	ea, _ := Find(kids, 0xEA)
	inner, err := ea.Children()
	if err != nil || len(inner) != 1 || inner[0].Tag != 0x80 {
		t.Fatalf("EA children %v %v", inner, err)
	}
	if v, ok := FindPath(list, 0xE3, 0xEA, 0x80); !ok || !bytes.Equal(v.Value, h(t, "008000")) {
		t.Fatal("FindPath")
	}
	if _, ok := FindPath(list, 0xE3, 0x4F, 0x01); ok {
		t.Fatal("FindPath into primitive")
	}
	if _, err := kids[0].Children(); !errors.Is(err, ErrNotConstructed) {
		t.Fatal(err)
	}
	if len(FindAll(kids, 0x4F)) != 1 || len(FindAll(kids, 0x01)) != 0 {
		t.Fatal("FindAll")
	}
}

func TestLengths(t *testing.T) {
	cases := []struct {
		n   int
		enc string
	}{{0, "00"}, {0x7F, "7F"}, {0x80, "8180"}, {0xFF, "81FF"}, {0x100, "820100"}, {0xFFFF, "82FFFF"}, {0x10000, "83010000"}, {0x1000000, "8401000000"}}
	for _, c := range cases {
		if got := LengthBytes(c.n); !bytes.Equal(got, h(t, c.enc)) {
			t.Fatalf("LengthBytes(%d) = %X", c.n, got)
		}
	}
	// 81 xx and 82 xx xx round trip through Parse.
	for _, n := range []int{0, 1, 127, 128, 255, 256, 300} {
		v := bytes.Repeat([]byte{0xAB}, n)
		enc := Encode(0xC4, v)
		list, err := Parse(enc)
		if err != nil || len(list) != 1 || !bytes.Equal(list[0].Value, v) || !bytes.Equal(list[0].Bytes(), enc) {
			t.Fatalf("n=%d: %v", n, err)
		}
	}
	// Non-minimal lengths are accepted.
	list, err := Parse(h(t, "4F820003A00102"))
	if err != nil || len(list[0].Value) != 3 {
		t.Fatal(err)
	}
	// 80: strict parse rejects, tolerant parse reads 128.
	obj := append([]byte{0xC9, 0x80}, bytes.Repeat([]byte{1}, 128)...)
	if _, err := Parse(obj); !errors.Is(err, ErrLength) {
		t.Fatal(err)
	}
	list, err = ParseWith(obj, Options{Accept80As128: true})
	if err != nil || len(list[0].Value) != 128 {
		t.Fatal(err)
	}
}

func TestTags(t *testing.T) {
	for _, c := range []struct {
		tag uint32
		enc string
	}{{0x4F, "4F"}, {0x9F70, "9F70"}, {0xBF3E, "BF3E"}, {0xDF01, "DF01"}, {0x5F20, "5F20"}, {0x9F8101, "9F8101"}, {0xFF818101, "FF818101"}} {
		if !bytes.Equal(TagBytes(c.tag), h(t, c.enc)) {
			t.Fatalf("TagBytes(%X)", c.tag)
		}
		list, err := Parse(Encode(c.tag, []byte{1}))
		if err != nil || list[0].Tag != c.tag {
			t.Fatalf("tag %X: %v", c.tag, err)
		}
	}
	if !(TLV{Tag: 0xBF3E}).Constructed() || (TLV{Tag: 0x9F70}).Constructed() {
		t.Fatal("Constructed")
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		in   string
		want error
	}{
		{"9F", ErrTruncated},
		{"9F70", ErrTruncated},
		{"4F05A000", ErrTruncated},
		{"4F81", ErrTruncated},
		{"4F8201", ErrTruncated},
		{"4F84FFFFFFFF00", ErrTruncated},
		{"4F85000000000001", ErrLength},
		{"4F80", ErrLength},
		{"9F8181818101", ErrTagTooLong},
		{"DF", ErrTruncated},
	}
	for _, c := range cases {
		_, err := Parse(h(t, c.in))
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.in, err, c.want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Error() == "" {
			t.Fatalf("%s: not *Error", c.in)
		}
	}
	if _, rest, err := ParseOne(h(t, "4F01AA9000")); err != nil || !bytes.Equal(rest, h(t, "9000")) {
		t.Fatal(err)
	}
	if _, _, err := ParseOne(nil); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
}

func TestPadding(t *testing.T) {
	b := h(t, "00004F01AAFFFF4F01BB00")
	list, err := ParseWith(b, Options{SkipPadding: true})
	if err != nil || len(list) != 2 || list[1].Value[0] != 0xBB {
		t.Fatalf("%v %v", list, err)
	}
}

func TestConstructedBuilders(t *testing.T) {
	got := EncodeConstructed(0xE2, Encode(0x4F, h(t, "A000000555DA01")), Encode(0xC3, h(t, "047809C2D80BBCF8D355C4A0E477ED98")))
	if !bytes.Equal(got, h(t, "E21B4F07A000000555DA01C310047809C2D80BBCF8D355C4A0E477ED98")) {
		t.Fatalf("%X", got)
	}
}

func TestLV(t *testing.T) {
	var b []byte
	b = AppendLV(b, h(t, "A00000055501"))
	b = AppendLV(b, nil)
	b = AppendLV(b, bytes.Repeat([]byte{7}, 200))
	fields, rest, err := ReadLVs(b, 3)
	if err != nil || len(rest) != 0 || len(fields) != 3 || len(fields[1]) != 0 || len(fields[2]) != 200 {
		t.Fatalf("%v %v", fields, err)
	}
	if b[8] != 0x81 || b[9] != 200 {
		t.Fatal("long LV length")
	}
	// A lone 80 reads as 128 in LV fields.
	lv := append([]byte{0x80}, bytes.Repeat([]byte{1}, 130)...)
	v, rest, err := ReadLV(lv)
	if err != nil || len(v) != 128 || len(rest) != 2 {
		t.Fatal(err)
	}
	if _, _, err := ReadLV(h(t, "05AABB")); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if _, _, err := ReadLV(nil); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if _, _, err := ReadLVs(h(t, "0101"), 2); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
}

func FuzzTLVParse(f *testing.F) {
	for _, s := range []string{"", "4F00", "E3134F08A0000001510000009F70010FC5039EFE80", "9F", "4F8180", "4F820100", "4F80",
		"BF3E035C015A", "00FF4F01AA", "DF8181818101", "4F84FFFFFFFF00", "E003C10100"} {
		b, _ := hex.DecodeString(s)
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, lenient bool) {
		list, err := ParseWith(b, Options{Accept80As128: lenient, SkipPadding: lenient})
		if err != nil {
			return
		}
		for _, x := range list {
			if len(x.Raw) < len(x.Value) {
				t.Fatal("Raw shorter than Value")
			}
			// Re-encoding and parsing again gives the same object.
			again, err := Parse(x.Bytes())
			if err != nil || len(again) != 1 || again[0].Tag != x.Tag || !bytes.Equal(again[0].Value, x.Value) {
				t.Fatalf("re-encode of %X: %v", x.Raw, err)
			}
			if x.Constructed() {
				_, _ = x.Children()
			}
		}
	})
}

func FuzzLV(f *testing.F) {
	for _, s := range []string{"", "00", "0101", "80", "8101AA", "820001AA", "83000001AA", "05AABB", "FF"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, rest, err := ReadLV(b)
		if err != nil {
			return
		}
		if len(v)+len(rest) > len(b) {
			t.Fatal("LV overlaps")
		}
		enc := AppendLV(nil, v)
		v2, rest2, err := ReadLV(enc)
		if err != nil || !bytes.Equal(v, v2) || len(rest2) != 0 {
			t.Fatalf("round trip: %v", err)
		}
		_, _, _ = ReadLVs(b, 4)
	})
}
