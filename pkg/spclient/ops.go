package spclient

import (
	"context"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// call is Call for the typed helpers: it decodes into resp and turns a
// response that is not a success into a *FailedError. resp is returned
// whenever a response arrived, also with a *FailedError, so the caller can
// read the fields the failure carries.
func call[Resp any](ctx context.Context, c *Client, op string, req any, opts []CallOption) (*Resp, error) {
	resp := new(Resp)
	r, err := c.Call(ctx, op, req, resp, opts...)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return resp, err
	}
	return resp, nil
}

// GetSEID resolves an MSI (MSISDN by default) to the SE id.
func (c *Client) GetSEID(ctx context.Context, req contract.GetSEIDRequest, opts ...CallOption) (*contract.GetSEIDResponse, error) {
	return call[contract.GetSEIDResponse](ctx, c, topology.OpGetSEID, req, opts)
}

// GetSEData returns what tsmhub knows of an SE, including the SP's security
// domain and service instances on it.
func (c *Client) GetSEData(ctx context.Context, req contract.GetSEDataRequest, opts ...CallOption) (*contract.GetSEDataResponse, error) {
	return call[contract.GetSEDataResponse](ctx, c, topology.OpGetSEData, req, opts)
}

// BeginConversation opens a conversation with an SE.
func (c *Client) BeginConversation(ctx context.Context, req contract.BeginConversationRequest, opts ...CallOption) (*contract.BeginConversationResponse, error) {
	return call[contract.BeginConversationResponse](ctx, c, topology.OpBeginConversation, req, opts)
}

// SendScript runs a script of C-APDUs in an open conversation. A script that
// stopped at a failing command comes back with status Failed (a *FailedError)
// and the response still lists the R-APDUs and the failure.
func (c *Client) SendScript(ctx context.Context, req contract.SendScriptRequest, opts ...CallOption) (*contract.SendScriptResponse, error) {
	return call[contract.SendScriptResponse](ctx, c, topology.OpSendScript, req, opts)
}

// EndConversation ends a conversation with an outcome.
func (c *Client) EndConversation(ctx context.Context, req contract.EndConversationRequest, opts ...CallOption) (*contract.EndConversationResponse, error) {
	return call[contract.EndConversationResponse](ctx, c, topology.OpEndConversation, req, opts)
}

// PrePersonalize creates the SP's security domain on an SE (with temporary
// keys, wrapped under the SP's key-transport key, when it had none there)
// and installs an instance of a catalog service into it.
func (c *Client) PrePersonalize(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.PrePersonalizeResponse, error) {
	return call[contract.PrePersonalizeResponse](ctx, c, topology.OpPrePersonalize, req, opts)
}

// ActivateService activates a personalized service instance.
func (c *Client) ActivateService(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.ServiceStateResponse, error) {
	return call[contract.ServiceStateResponse](ctx, c, topology.OpActivateService, req, opts)
}

// SuspendService locks a service instance.
func (c *Client) SuspendService(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.ServiceStateResponse, error) {
	return call[contract.ServiceStateResponse](ctx, c, topology.OpSuspendService, req, opts)
}

// ResumeService unlocks a service instance the SP suspended.
func (c *Client) ResumeService(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.ServiceStateResponse, error) {
	return call[contract.ServiceStateResponse](ctx, c, topology.OpResumeService, req, opts)
}

// TerminateService deletes a service instance (and the SP's SD when
// pre-personalize created it and it holds nothing else).
func (c *Client) TerminateService(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.ServiceStateResponse, error) {
	return call[contract.ServiceStateResponse](ctx, c, topology.OpTerminateService, req, opts)
}

// GetServiceState returns the state of a service instance.
func (c *Client) GetServiceState(ctx context.Context, req contract.ServiceRequest, opts ...CallOption) (*contract.ServiceStateResponse, error) {
	return call[contract.ServiceStateResponse](ctx, c, topology.OpGetServiceState, req, opts)
}
