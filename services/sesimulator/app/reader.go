package app

import (
	"context"
	"fmt"
)

// A card reader (PC/SC through vsmartcard's vpcd) reaches a card outside the
// bus: the use cases below give it the same guarantees as a script. Every
// APDU and every reset runs under the card's SE lock and is committed to the
// fleet before the reader gets the answer, so an SP script and a reader
// session never interleave inside one APDU and a restart resumes exactly
// where the reader left the card.
//
// A reader and a conversation share one card as two terminals would: the
// last one to reset it owns the logical channels and secure channels. A
// reset from the reader ends the card's OTA session, so the next script of
// any conversation finds a freshly reset card instead of a secure channel
// the reader opened.

// HasCard reports whether the SE has a card.
func (a *App) HasCard(_ context.Context, seID string) (bool, error) {
	var has bool
	err := a.fleet.Read(func(r FleetReader) error {
		var err error
		has, err = r.HasCard(seID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read card of SE %s: %w", seID, err)
	}
	return has, nil
}

// ResetFromReader power-cycles (or warm-resets) the SE's card for a reader:
// logical channels 1-3 close, every secure channel ends, channel 0 selects
// the default application. The reset state and the end of the OTA session
// are committed before it returns. ErrNotFound if the SE has no card.
func (a *App) ResetFromReader(_ context.Context, seID string) error {
	unlock := a.locks.lock(seID)
	defer unlock()
	lc, err := a.load(seID)
	if err != nil {
		return err
	}
	if lc == nil {
		return ErrNotFound
	}
	lc.card.Reset()
	stored, err := a.fleet.EncodeCard(seID, lc.card)
	if err != nil {
		a.cache.remove(seID)
		return fmt.Errorf("encode card of SE %s: %w", seID, err)
	}
	err = a.fleet.Write(func(w FleetWriter) error {
		if err := w.PutCard(seID, stored); err != nil {
			return err
		}
		return w.PutSessionConversation(seID, "")
	})
	if err != nil {
		a.cache.remove(seID)
		return fmt.Errorf("commit reset of SE %s: %w", seID, err)
	}
	lc.conversationID = ""
	a.cache.add(seID, lc)
	a.cfg.Observer.ReaderReset()
	a.cfg.Log.Debug("card reset by reader", "seId", seID)
	return nil
}

// TransmitFromReader runs one C-APDU from a reader on the SE's card and
// returns the R-APDU once the card's new state is committed. ErrNotFound if
// the SE has no card; any other error means the APDU left no trace and the
// reader must not get an answer.
func (a *App) TransmitFromReader(_ context.Context, seID string, capdu []byte) ([]byte, error) {
	resp, err := a.transmitOne(seID, capdu)
	if err != nil {
		return nil, err
	}
	a.cfg.Observer.ReaderAPDUExecuted()
	return resp, nil
}
