package storage

// Rescheduler is what the watchdog and rescheduling need from a backend beyond the core.
type Rescheduler interface{}

// RescheduleTx is what rescheduling needs inside a transaction beyond the core.
type RescheduleTx interface{}
