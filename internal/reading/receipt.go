package reading

// Receipt is what an Outpost receiver publishes on
// <prefix>/<device>/receipts after each commit of an MQTT batch: which seqs
// of a stream are now stored (duplicates included), which dropped ranges it
// recorded, and which messages it refused for good. The device deletes
// what a receipt names, and dead-letters what it rejects.
type Receipt struct {
	Stream   string          `json:"stream"`
	Ranges   [][2]uint64     `json:"ranges"`
	Dropped  [][2]uint64     `json:"dropped,omitempty"`
	Rejected []RejectedRange `json:"rejected,omitempty"`
}

// RejectedRange names what a refused message held and why; Line is the
// 1-based line at fault, 0 when the whole message was.
type RejectedRange struct {
	Ranges [][2]uint64 `json:"ranges"`
	Error  string      `json:"error"`
	Line   int         `json:"line,omitempty"`
}
