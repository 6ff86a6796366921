package ports_test

import (
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/services/registry/ports"
)

func TestImportLinesNumbersEveryLine(t *testing.T) {
	long := `{"seId":"` + strings.Repeat("0", 70<<10) + `"}`
	body := strings.Join([]string{
		`{"seId":"0102030405060708","msi":"491700000001","mno":"mno-a"}`, // 1
		``,                     // 2: blank, skipped
		`   `,                  // 3: blank, skipped
		long,                   // 4: too long
		`{"seId":"01", "x":1}`, // 5: unknown field
		`[1,2]`,                // 6: not an object
		`{"seId":"0A0B0C0D0E0F1011","preIssuedSpDomains":[{"spId":"bank-a"}]}`, // 7, no newline at the end
	}, "\n")
	var got []string
	for l := range ports.ImportLines(strings.NewReader(body)) {
		desc := l.SEID
		if l.Err != nil {
			desc = "err:" + l.Err.Error()
		}
		got = append(got, string(rune('0'+l.Line))+" "+desc)
	}
	if len(got) != 5 {
		t.Fatalf("got %d lines: %q", len(got), got)
	}
	want := []string{"1 0102030405060708", "4 err:the line is longer than", "5 err:unknown field \"x\"",
		"6 err:the line must be a JSON object", "7 0A0B0C0D0E0F1011"}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("line %d: %q, want prefix %q", i, got[i], w)
		}
	}
}

func TestImportLinesMapsFields(t *testing.T) {
	body := `{"seId":"0102030405060708","msi":"+49170","msiType":"MDN","mno":"mno-a","seType":"UICC",` +
		`"configuration":"uicc-3p","profileId":"p","gpVersion":"2.3","javaCardVersion":"3.0.4","certificationLevel":"EAL4",` +
		`"expiresAt":"2030-01-01T00:00:00Z","preIssuedSpDomains":[{"spId":"bank-a","aid":"A000000555AA0001"}]}` + "\n"
	for l := range ports.ImportLines(strings.NewReader(body)) {
		in := l.Input
		if l.Err != nil || l.Line != 1 || in.MSI != "+49170" || in.MSIType != "MDN" || in.MNO != "mno-a" || in.SEType != "UICC" ||
			in.Configuration != "uicc-3p" || in.ProfileID != "p" || in.GPVersion != "2.3" || in.JavaCardVersion != "3.0.4" ||
			in.CertificationLevel != "EAL4" || in.ExpiresAt != "2030-01-01T00:00:00Z" || len(in.PreIssuedSPDomains) != 1 ||
			in.PreIssuedSPDomains[0].AID != "A000000555AA0001" {
			t.Fatalf("decoded %+v %v", l, l.Err)
		}
	}
}
