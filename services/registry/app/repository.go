package app

import (
	"time"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// ReadTx reads registry state inside one transaction.
type ReadTx interface {
	MNO(id string) (domain.MNO, bool, error)
	SP(id string) (domain.SP, bool, error)
	Service(number, version string) (domain.Service, bool, error)
	SE(id string) (domain.SE, bool, error)
	// SEIDByMSI finds the SE holding an MSI of a type (MSI index).
	SEIDByMSI(msiType, msi string) (string, bool, error)
	// SPContent is one SP's content on an SE (content model).
	SPContent(seID, spID string) (domain.SPContent, bool, error)
	// SEContent lists every SP's content on an SE, by SP id.
	SEContent(seID string) ([]domain.SPContent, error)
	// Audit is the last audit of an SE.
	Audit(seID string) (domain.Audit, bool, error)
}

// Tx reads and changes registry state inside one transaction. Every Save
// publishes the entity's full record in the same transaction (outbox), so no
// change is ever committed without its event, nor published without its change.
type Tx interface {
	ReadTx
	SaveMNO(m domain.MNO) error
	// SaveSP stores the SP with its key-transport key (kept encrypted; the
	// published record has no key).
	SaveSP(sp domain.SP, keyTransportKey []byte) error
	// SPKeyTransportKeyEquals reports whether the SP's stored key-transport key
	// equals key (false if it cannot be decrypted, e.g. after a KEK change).
	SPKeyTransportKeyEquals(spID string, key []byte) (bool, error)
	SaveService(s domain.Service) error
	// SaveSE stores the SE and keeps the MSI index in step: previous is the
	// stored state it replaces (nil for a new SE), whose index entry is
	// removed if the MSI changed.
	SaveSE(se domain.SE, previous *domain.SE) error
	// SaveSPContent stores one SP's content on an SE (a projection: nothing
	// is published).
	SaveSPContent(seID string, c domain.SPContent) error
	// SaveAudit stores the last audit of an SE (nothing is published).
	SaveAudit(seID string, a domain.Audit) error
	// RequestProcedure emits a ProcedureRequested to the conversation service.
	RequestProcedure(p domain.ProcedureRequest) error
	// NotifyMSIChanged sends SP spID an msi-changed notification about se.
	NotifyMSIChanged(spID string, se domain.SE, changedAt time.Time) error
}

// Repository runs transactions on the registry state.
type Repository interface {
	// Update runs fn in a write transaction committed durably before it
	// returns. fn may run more than once (group commit), so it must keep its
	// results in variables it resets itself.
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(ReadTx) error) error
}
