package app

import (
	"context"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// AuthorizationRequest is what an Authorizer decides on: who sends the script,
// to which SE and target, and the parsed commands (their headers are in clear
// even when the SP secured the data end to end).
type AuthorizationRequest struct {
	Request        events.RequestRef
	ConversationID string
	SEID           string
	// TargetAID is the AID the conversation was opened for.
	TargetAID string
	// Securing is the securing mode (end-to-end in this release).
	Securing string
	Commands []domain.Command
}

// Authorizer decides whether an SP may send a script. It returns nil to allow
// it, or a Rejection (NOT_ALLOWED, with the offending commands in Failed) to
// refuse it; a returned error is an infrastructure failure and the script is
// retried. It must be a pure function of its input and state it owns: it runs
// once per delivery, outside the transaction.
//
// DESIGN.md section 6: an SP may SELECT only its own SD and instances, and may
// not INSTALL, LOAD, DELETE or SET STATUS outside its SD unless its SD has
// Delegated Management and the command carries a token. The content-management
// work will provide an Authorizer that enforces this from the SEs' content
// model; until then AllowAll is wired in.
type Authorizer interface {
	Authorize(ctx context.Context, req AuthorizationRequest) (*domain.Rejection, error)
}

// AllowAll authorizes every script. It is the placeholder until the content
// model of each SE is available to the router: end-to-end scripts are secured
// by the SP's own keys, so the card itself still refuses what the SP's SD may
// not do.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(context.Context, AuthorizationRequest) (*domain.Rejection, error) {
	return nil, nil
}
