package card

import "github.com/tsmhub/tsmhub/pkg/gp/apdu"

type loadState struct{}

func (r *request) install() ([]byte, uint16)   { return nil, apdu.SWINSNotSupported }
func (r *request) load() ([]byte, uint16)      { return nil, apdu.SWINSNotSupported }
func (r *request) deleteCmd() ([]byte, uint16) { return nil, apdu.SWINSNotSupported }
func (r *request) setStatus() ([]byte, uint16) { return nil, apdu.SWINSNotSupported }
