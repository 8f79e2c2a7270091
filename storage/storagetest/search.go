package storagetest

// searchTests cover search and statistics.
var searchTests = []test{}
