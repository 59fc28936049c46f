// Package record is the spool file's format, version 1: the buckets and
// keys of a spool file, the compact binary records they hold, the names
// and boots Table that turns a reading's small ids back into names, and
// the few reads and writes of them inside one bbolt transaction (counters,
// stream records, pending ranges, deleting a run of seqs). It decides
// nothing: the spool says what to append, drop and delete; record says
// how it is stored.
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
//	        u64 big-endian seq → reading value (see value.go).
//
// All integers in keys and in meta values are 8-byte big-endian. The
// logical size of a reading is len(key)+len(value)+16 (bbolt's leaf
// element header); the caps work on that sum, kept in meta, never on a
// scan of the file. Dead letters do not count against the cap.
package record
