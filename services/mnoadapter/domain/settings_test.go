package domain

import (
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

func TestEffectiveSettings(t *testing.T) {
	rec := &events.MNORecord{MNOID: "mno-a", Name: "MNO A", OTACarrier: "https", MaxAPDUsPerScript: 32, LatencyMs: 250}
	cases := []struct {
		name        string
		rec         *events.MNORecord
		ov          Overrides
		latency     time.Duration
		latencySrc  string
		maxAPDUs    int
		maxAPDUsSrc string
	}{
		{name: "no record", latency: 0, latencySrc: SourceDefault, maxAPDUs: 0, maxAPDUsSrc: SourceDefault},
		{name: "record", rec: rec, latency: 250 * time.Millisecond, latencySrc: SourceRegistry, maxAPDUs: 32, maxAPDUsSrc: SourceRegistry},
		{name: "env wins", rec: rec, ov: Overrides{Latency: time.Second, LatencySet: true, MaxAPDUsPerScript: 8},
			latency: time.Second, latencySrc: SourceEnvironment, maxAPDUs: 8, maxAPDUsSrc: SourceEnvironment},
		{name: "env zero latency wins", rec: rec, ov: Overrides{LatencySet: true},
			latency: 0, latencySrc: SourceEnvironment, maxAPDUs: 32, maxAPDUsSrc: SourceRegistry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := EffectiveSettings("mno-a", tc.rec, tc.ov)
			if s.Latency != tc.latency || s.LatencySource != tc.latencySrc || s.LatencyMs != tc.latency.Milliseconds() {
				t.Errorf("latency %s (%s), want %s (%s)", s.Latency, s.LatencySource, tc.latency, tc.latencySrc)
			}
			if s.MaxAPDUsPerScript != tc.maxAPDUs || s.MaxAPDUsSource != tc.maxAPDUsSrc {
				t.Errorf("max APDUs %d (%s), want %d (%s)", s.MaxAPDUsPerScript, s.MaxAPDUsSource, tc.maxAPDUs, tc.maxAPDUsSrc)
			}
			if s.RegistryRecord != (tc.rec != nil) || s.RateBurst != 1 {
				t.Errorf("settings %+v", s)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if Expired("mno-a", time.Time{}, now) != nil {
		t.Error("no deadline expired")
	}
	if Expired("mno-a", now, now) != nil || Expired("mno-a", now.Add(time.Second), now) != nil {
		t.Error("expired before its deadline")
	}
	err := Expired("mno-a", now.Add(-time.Second), now)
	if err == nil || err.Code != contract.CodeExpired || !strings.Contains(err.Message, "2026-01-01T11:59:59Z") {
		t.Errorf("got %+v", err)
	}
}

func TestTooLarge(t *testing.T) {
	s := Settings{MNOID: "mno-a", MaxAPDUsPerScript: 2}
	if s.TooLarge(2) != nil {
		t.Error("2 of 2 too large")
	}
	if err := s.TooLarge(3); err == nil || err.Code != contract.CodeScriptTooLarge || !strings.Contains(err.Message, "at most 2") {
		t.Errorf("got %+v", err)
	}
	if (Settings{}).TooLarge(1000) != nil {
		t.Error("no limit but too large")
	}
}
