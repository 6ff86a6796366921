module github.com/tsmhub/tsmhub/test

go 1.26.0

require github.com/tsmhub/tsmhub/pkg v0.0.0

replace github.com/tsmhub/tsmhub/pkg => ../pkg

require github.com/tsmhub/tsmhub/schemas v0.0.0

replace github.com/tsmhub/tsmhub/schemas => ../schemas
