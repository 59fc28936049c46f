// Package spool is Outpost's outbox on the device: a bbolt file that keeps
// every committed reading on local flash until the uplink has delivered it.
//
// The spool assigns each reading its stream and seq, group-commits appends
// in one fsynced transaction per commit interval (sparing the SD card),
// hands the drain side batches oldest first, deletes a batch when it is
// acknowledged (sharing the next commit), enforces the byte and age caps by
// dropping the oldest readings with seq-range accounting (or rejecting new
// ones), keeps readings the receiver rejected in a dead-letter bucket, and
// quarantines a file it cannot read, starting a new stream.
//
// # File format (version 1)
//
// bbolt, page size 4096, freelist not synced. Top-level buckets:
//
//	meta    "format" → u64 format version; "stream" → u64 live stream id;
//	        "seq" → u64 live seq high-water mark; "bytes", "readings" →
//	        u64 logical size and count of stored readings; "dropped",
//	        "deadlettered", "purged", "quarantined" → u64 counters;
//	        0x01 ‖ stream(8) → created unix ns(8) ‖ hwm(8): known streams;
//	        0x02 ‖ stream(8) ‖ from(8) → to(8): seq ranges dropped or purged
//	        and not yet reported upstream.
//	names   u32 id → series: sensor, unit and sorted labels (each uvarint
//	        length + bytes), so a reading carries only the small id.
//	boots   u32 index → boot id(16) ‖ flags(1) ‖ varint wall-clock offset ns.
//	dead    stream(8) ‖ from(8) → dead-letter record (see dead.go).
//	<16 hex digits of a stream id>
//	        u64 big-endian seq → reading value (see codec.go).
//
// All integers in keys and in meta values are 8-byte big-endian. The
// logical size of a reading is len(key)+len(value)+16 (bbolt's leaf
// element header); the caps work on that sum, kept in meta, never on a
// scan of the file. Dead letters do not count against the cap.
//
// # Files beside the spool
//
//	<path>.quarantined-<UTC time>  a file that could not be read, set
//	                               aside; Salvage copies what it can back
//	<path>.compact                 a compaction in progress; removed at open
//	<path>.opening                 an open in progress: bbolt rebuilds its
//	                               freelist in a goroutine a corrupt page
//	                               can crash, so an open that finds this
//	                               marker checks every page itself first,
//	                               and quarantines after two deaths
//
// # Durability and writes
//
// A reading is committed when the transaction holding it has been fsynced
// (bbolt fdatasyncs twice per commit). Acknowledgements are deleted in the
// next commit, beside the appends: a crash before it means a resend, which
// the receiver discards. With 10 readings per commit a reading costs about
// two pages (8 KiB) per commit, ~0.8 KiB over its life.
package spool
