module github.com/tsmhub/tsmhub/bench

go 1.26.0

require github.com/tsmhub/tsmhub/pkg v0.0.0

replace github.com/tsmhub/tsmhub/pkg => ../pkg

require github.com/tsmhub/tsmhub/schemas v0.0.0 // indirect

replace github.com/tsmhub/tsmhub/schemas => ../schemas

require (
	github.com/google/pprof v0.0.0-20261105003125-4bf881d7fb0b
	github.com/nats-io/nats.go v1.55.0
	github.com/tsmhub/tsmhub/services/conversation v0.0.0
	github.com/tsmhub/tsmhub/services/mnoadapter v0.0.0
	github.com/tsmhub/tsmhub/services/registry v0.0.0
	github.com/tsmhub/tsmhub/services/scriptrouter v0.0.0
	github.com/tsmhub/tsmhub/services/sesimulator v0.0.0
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.8.0-default-no-op // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/cloudevents/sdk-go/v2 v2.16.2 // indirect
	github.com/go-chi/chi/v5 v5.5.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/jwt/v2 v2.8.2 // indirect
	github.com/nats-io/nats-server/v2 v2.15.2 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.2 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/tsmhub/tsmhub/services/conversation => ../services/conversation
	github.com/tsmhub/tsmhub/services/mnoadapter => ../services/mnoadapter
	github.com/tsmhub/tsmhub/services/registry => ../services/registry
	github.com/tsmhub/tsmhub/services/scriptrouter => ../services/scriptrouter
	github.com/tsmhub/tsmhub/services/sesimulator => ../services/sesimulator
)
