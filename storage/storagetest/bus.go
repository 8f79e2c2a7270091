package storagetest

// busTests cover what the bus consumers and the publisher relay need: message dedup, parking,
// rejected messages, publishing the outbox.
var busTests = []test{}
