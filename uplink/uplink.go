// Package uplink sends batches of readings from the device to the cloud:
// over HTTP to an Outpost receiver, or over MQTT to a broker. A batch is a
// reading.Batch, as the spool hands it out: readings of one stream, oldest
// first, and the seq ranges to report as dropped, dead-lettered or purged.
// Every transport keeps one contract: send a batch, and learn whether it
// was accepted (delete it from the spool), is worth retrying (and when),
// was rejected for good (dead-letter it), or was too large (split it).
package uplink

import (
	"fmt"
	"time"
)

// Outcome says what became of a sent batch.
type Outcome uint8

const (
	// Accepted: the receiver stored the batch durably; delete it.
	Accepted Outcome = iota + 1
	// Retry: nothing is known to be stored; send it again after
	// Result.RetryAfter (or the sender's backoff when that is zero).
	Retry
	// Rejected: the receiver will never take this batch (or, when
	// Result.Line is set, that line of it): dead-letter it.
	Rejected
	// TooLarge: split the batch and send the halves.
	TooLarge
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Retry:
		return "retry"
	case Rejected:
		return "rejected"
	case TooLarge:
		return "too large"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Result is the answer to one send.
type Result struct {
	Outcome Outcome
	// Err says why a batch was not accepted, in words for the operator.
	Err error
	// RetryAfter is the peer's own hint (Retry-After), zero if none.
	RetryAfter time.Duration
	// Line is the 1-based line of the batch a rejection names, 0 when
	// the whole batch is at fault. Lines 1..len(Readings) are readings;
	// the dropped-range lines follow them.
	Line int
	// Misconfigured marks a retryable failure that will not go away by
	// itself (401 unknown token, 404 wrong URL): status shows it.
	Misconfigured bool
	// Unreachable marks a retryable failure that never reached the peer
	// (connection refused or reset, DNS, a dial or TLS handshake timeout;
	// over MQTT, not connected): it says nothing about the batch and is
	// cheap to retry soon (Backoff.UnreachableMax).
	Unreachable bool
	// Counts is the receiver's account of an accepted batch.
	Counts Counts
}

// Counts is the receiver's account of an accepted batch. Accepted,
// Duplicates and Conflicts add up to the readings sent.
type Counts struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Conflicts  int `json:"conflicts"`
	Corrected  int `json:"corrected"`
}
