// Package pkg is the root of the code the tsmhub services share: the bus layer
// (CloudEvents over JetStream, inbox/outbox in bbolt), the public contract
// types, the GlobalPlatform card model and secure-channel crypto.
package pkg
