module github.com/tsmhub/tsmhub/schemas

go 1.26.0
