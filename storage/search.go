package storage

// Searcher finds jobs and computes statistics over them.
type Searcher interface{}
