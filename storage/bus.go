package storage

// Bus is what the bus consumers and the publisher relay need from a backend beyond the core.
type Bus interface{}

// BusTx is what the bus consumers need inside a transaction beyond the core.
type BusTx interface{}
