package e2e

import (
	"errors"

	"github.com/tsmhub/tsmhub/pkg/spclient"
)

func asFailed(err error, f **spclient.FailedError) bool { return errors.As(err, f) }
