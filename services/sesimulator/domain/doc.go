// Package domain holds the se-simulator's rules, free of storage and bus:
// how an enrolled SE becomes a card (the card factory), how a script runs on
// a card (in order, stopping at the first failure), and the execution
// counters kept per card.
package domain
